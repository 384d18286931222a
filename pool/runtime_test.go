package pool

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// holdClaims claims n connections from n goroutines, which hold them
// until release is closed; claimed counts those that have theirs.
func holdClaims(t *testing.T, p *Pool[*fakeConn], n int, release <-chan struct{}, claimed *atomic.Int64) {
	for range n {
		go func() {
			c, err := p.Claim(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			claimed.Add(1)
			<-release
			c.Release()
		}()
	}
}

func TestSetPolicyGrowsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{MaxSlots: 2, Spares: -1}, backends(2)...)
		release := make(chan struct{})
		var claimed atomic.Int64
		holdClaims(t, p, 8, release, &claimed)
		synctest.Wait()
		if n := claimed.Load(); n != 2 {
			t.Fatalf("%d claims served under MaxSlots 2, want 2", n)
		}
		pol := p.Policy()
		pol.MaxSlots = 8
		if err := p.SetPolicy(pol); err != nil {
			t.Fatalf("SetPolicy: %v", err)
		}
		synctest.Wait() // no time passes: growth is at once
		if n := claimed.Load(); n != 8 {
			t.Errorf("%d claims served right after MaxSlots went to 8, want 8", n)
		}
		if got := p.Stats().MaxSlots; got != 8 {
			t.Errorf("Stats().MaxSlots = %d, want 8", got)
		}
		close(release)
		synctest.Wait()
		if peak := fc.peakOpen(); peak > 8 {
			t.Errorf("%d connections open at once, cap 8", peak)
		}
	})
}

// TestSetPolicyShrinks lowers a cap under 8 held claims and 4 queued:
// nothing opens, each claimed connection beyond the cap closes as it
// comes back, and the queued claims are served by the ones kept.
func TestSetPolicyShrinks(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		maxSlots, perBackend int
		want                 int // the cap on both backends together
	}{
		{"MaxSlots", 3, 8, 3},
		{"MaxPerBackend", 8, 2, 4},
	} {
		for _, inline := range []bool{false, true} {
			t.Run(tt.name+map[bool]string{false: "/background-recycle", true: "/inline-recycle"}[inline], func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					testShrink(t, tt.maxSlots, tt.perBackend, tt.want, recycleMode(inline))
				})
			})
		}
	}
}

func testShrink(t *testing.T, maxSlots, perBackend, want int, recycle RecycleMode) {
	p, fc := newTestPool(t, Policy{MaxSlots: 8, Spares: 2, Recycle: recycle}, backends(2)...)
	held := make([]Claim[*fakeConn], 8)
	for i := range held {
		held[i] = claimFrom(t, p, t.Context())
	}
	synctest.Wait()
	pol := p.Policy()
	pol.MaxSlots, pol.MaxPerBackend = maxSlots, perBackend
	if err := p.SetPolicy(pol); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
	fc.limit.Store(int64(want))
	var served atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 3 {
				c := claimFrom(t, p, t.Context())
				served.Add(1)
				time.Sleep(time.Millisecond)
				release(c)
			}
		})
	}
	synctest.Wait()
	connects := fc.connects.Load()
	open := fc.openConns()
	for _, c := range held {
		release(c)
		synctest.Wait()
		if n := fc.openConns(); n > open {
			t.Errorf("open connections went from %d to %d while shrinking", open, n)
		} else {
			open = n
		}
	}
	wg.Wait()
	synctest.Wait()
	if n := fc.openConns(); n > want {
		t.Errorf("%d connections open after the claims came back, cap %d", n, want)
	}
	if n := fc.connects.Load(); n != connects {
		t.Errorf("%d connection attempts while over the new cap", n-connects)
	}
	if n := served.Load(); n != 12 {
		t.Errorf("%d claims served, want 12", n)
	}
	for _, b := range p.Stats().Backends {
		if b.Slots() > perBackend {
			t.Errorf("backend %s has %d slots, MaxPerBackend %d", b.Backend.Addr, b.Slots(), perBackend)
		}
	}
}

// TestSetPolicyUnderLoad moves MaxSlots up and down under 64 goroutines:
// no claim fails, and no connection opens past the cap in force.
func TestSetPolicyUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{MaxSlots: 4, Spares: 1, ClaimTimeout: time.Minute}, backends(3)...)
		fc.limit.Store(4)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var claims atomic.Int64
		for i := range 64 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := p.Claim(t.Context())
					if err != nil {
						t.Error(err)
						return
					}
					claims.Add(1)
					time.Sleep(time.Duration(1+i%5) * time.Millisecond)
					c.Release()
				}
			})
		}
		for _, caps := range []int{16, 2, 12, 1, 6} {
			time.Sleep(200 * time.Millisecond)
			pol := p.Policy()
			grow := caps > pol.MaxSlots
			pol.MaxSlots = caps
			if grow {
				fc.limit.Store(int64(caps))
			}
			if err := p.SetPolicy(pol); err != nil {
				t.Fatal(err)
			}
			if !grow {
				// The attempts under way when the cap fell may finish;
				// none may start.
				synctest.Wait()
				fc.limit.Store(int64(caps))
			}
			time.Sleep(200 * time.Millisecond)
			if n := fc.openConns(); n > caps {
				t.Errorf("%d connections open 200 ms after MaxSlots went to %d", n, caps)
			}
		}
		close(stop)
		wg.Wait()
		if claims.Load() == 0 {
			t.Error("no claim was served")
		}
	})
}

func TestSetPolicyClaimTimeoutAppliesToWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: 1, Spares: -1, ClaimTimeout: time.Hour}, backends(1)...)
		held := claimFrom(t, p, t.Context())
		errc := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := p.Claim(t.Context())
			errc <- err
		}()
		time.Sleep(time.Second)
		pol := p.Policy()
		pol.ClaimTimeout = 3 * time.Second
		if err := p.SetPolicy(pol); err != nil {
			t.Fatal(err)
		}
		err := <-errc
		if !errors.Is(err, ErrClaimTimeout) {
			t.Errorf("queued claim: %v, want ErrClaimTimeout", err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("queued claim failed after %v, want the new timeout, 3s", waited)
		}
		release(held)
	})
}

func TestSetPolicyRefusesWhatNewRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: 5}, backends(1)...)
		for _, pol := range []Policy{
			{MaxSlots: -1},
			{MaxSlots: MaxSlotsLimit + 1},
			{BackoffMin: time.Second, BackoffMax: time.Millisecond},
			{ClaimTimeout: -time.Second},
		} {
			err := p.SetPolicy(pol)
			r, _ := resolver.NewStatic(backends(1)...)
			_, newErr := New(r, newFakeConnector(), pol)
			if !errors.Is(err, ErrBadPolicy) || newErr == nil || err.Error() != newErr.Error() {
				t.Errorf("SetPolicy(%+v) = %v; New says %v", pol, err, newErr)
			}
		}
		if got := p.Policy().MaxSlots; got != 5 {
			t.Errorf("MaxSlots = %d after refused changes, want 5", got)
		}
	})
}

func TestSetPolicyHealthIntervalReschedules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{MaxSlots: 2, Spares: 2, HealthInterval: time.Hour}, backends(1)...)
		time.Sleep(time.Second)
		synctest.Wait()
		before := fc.checks.Load()
		pol := p.Policy()
		pol.HealthInterval = time.Second
		if err := p.SetPolicy(pol); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := fc.checks.Load() - before; n < 2 {
			t.Errorf("%d health checks in 3s after HealthInterval went from 1h to 1s, want 2 or more", n)
		}
	})
}
