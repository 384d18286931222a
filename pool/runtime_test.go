package pool

import (
	"context"
	"errors"
	"slices"
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

// TestPause shows Pause and Resume: Pause waits for the claims out, new
// claims wait while the pool is paused (bounded by their contexts), and
// Resume serves them at once.
func TestPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: 4, Spares: 2}, backends(2)...)
		held := []Claim[*fakeConn]{claimFrom(t, p, t.Context()), claimFrom(t, p, t.Context())}
		paused := make(chan error, 1)
		go func() { paused <- p.Pause(t.Context()) }()
		synctest.Wait()
		var served atomic.Int64
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				c := claimFrom(t, p, t.Context())
				served.Add(1)
				release(c)
			})
		}
		if _, ok := p.TryClaimFiltered(t.Context(), nil); ok {
			t.Error("TryClaimFiltered took a connection from a paused pool")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		start := time.Now()
		if _, err := p.Claim(ctx); !errors.Is(err, ErrClaimTimeout) || time.Since(start) != 100*time.Millisecond {
			t.Errorf("claim with a 100ms context on a paused pool: %v after %v, want ErrClaimTimeout after 100ms", err, time.Since(start))
		}
		cancel()
		st := p.Stats()
		if !st.Paused || st.Waiting != 3 {
			t.Errorf("Stats: Paused %v, Waiting %d; want true, 3", st.Paused, st.Waiting)
		}
		release(held[0])
		synctest.Wait()
		select {
		case err := <-paused:
			t.Fatalf("Pause returned %v with a claim still out", err)
		default:
		}
		release(held[1])
		if err := <-paused; err != nil {
			t.Errorf("Pause = %v, want nil once the claims came back", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := served.Load(); n != 0 {
			t.Errorf("%d claims served while paused", n)
		}
		p.Resume()
		synctest.Wait() // no time passes
		if n := served.Load(); n != 3 {
			t.Errorf("%d claims served at Resume, want 3", n)
		}
		wg.Wait()
		if p.Stats().Paused {
			t.Error("Stats().Paused after Resume")
		}
	})
}

func TestPauseGivesUpWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: 2}, backends(1)...)
		held := claimFrom(t, p, t.Context())
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := p.Pause(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Pause with a claim out past its context = %v, want DeadlineExceeded", err)
		}
		if !p.Stats().Paused {
			t.Error("pool not paused after Pause gave up waiting")
		}
		release(held)
		p.Resume()
		release(claimFrom(t, p, t.Context()))
	})
}

// TestDrain drains one of two backends with claims out on it: its idle
// connections close at once, no claim reaches it, Drain returns once its
// last claimed connection came back and closed, and it stays empty until
// Undrain, after which it serves again.
func TestDrain(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(map[bool]string{false: "background-recycle", true: "inline-recycle"}[inline], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bs := backends(2)
				gone := bs[0]
				p, fc := newTestPool(t, Policy{MaxSlots: 8, Spares: 4, Recycle: recycleMode(inline)}, bs...)
				var held []Claim[*fakeConn]
				for range 6 {
					held = append(held, claimFrom(t, p, t.Context()))
				}
				drained := make(chan error, 1)
				go func() { drained <- p.Drain(t.Context(), gone.Key()) }()
				synctest.Wait()
				onGone := 0
				for _, c := range held {
					if c.Backend().Addr == gone.Addr {
						onGone++
					}
				}
				if onGone == 0 {
					t.Fatal("no claim on the backend to drain")
				}
				if n := fc.openTo(gone.Addr); n != onGone {
					t.Errorf("%d connections open to the drained backend, want only its %d claimed", n, onGone)
				}
				for range 20 {
					c := claimFrom(t, p, t.Context())
					if c.Backend().Addr == gone.Addr {
						t.Errorf("claim served by the drained backend")
					}
					release(c)
				}
				for _, c := range held {
					release(c)
				}
				if err := <-drained; err != nil {
					t.Errorf("Drain = %v, want nil", err)
				}
				if n := fc.openTo(gone.Addr); n != 0 {
					t.Errorf("%d connections open to the backend after Drain returned", n)
				}
				time.Sleep(time.Minute) // periodic rebalances, checks
				synctest.Wait()
				st := p.Stats()
				for _, b := range st.Backends {
					if b.Drained != (b.Backend.Addr == gone.Addr) {
						t.Errorf("backend %s: Drained %v", b.Backend.Addr, b.Drained)
					}
					if b.Backend.Addr == gone.Addr && b.Slots() != 0 {
						t.Errorf("drained backend has %d slots a minute on", b.Slots())
					}
				}
				if err := p.Undrain(gone.Key()); err != nil {
					t.Fatalf("Undrain: %v", err)
				}
				time.Sleep(time.Minute) // past the slow start
				reached := false
				for range 20 {
					c := claimFrom(t, p, t.Context())
					reached = reached || c.Backend().Addr == gone.Addr
					release(c)
				}
				if !reached {
					t.Error("no claim reached the backend after Undrain")
				}
			})
		})
	}
}

func TestDrainOnlyBackendHoldsClaims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(1)
		p, _ := newTestPool(t, Policy{MaxSlots: 2}, bs...)
		synctest.Wait() // the backend is known
		if err := p.Drain(t.Context(), bs[0].Key()); err != nil {
			t.Fatalf("Drain: %v", err)
		}
		got := make(chan error, 1)
		go func() {
			c, err := p.Claim(t.Context())
			if err == nil {
				c.Release()
			}
			got <- err
		}()
		time.Sleep(time.Second)
		select {
		case err := <-got:
			t.Fatalf("claim with the only backend drained: %v, want it to wait", err)
		default:
		}
		if err := p.Undrain(bs[0].Key()); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Errorf("claim after Undrain: %v", err)
		}
	})
}

func TestDrainUnknownBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{}, backends(1)...)
		synctest.Wait()
		k := resolver.Key{Addr: "127.0.0.1:1"}
		if err := p.Drain(t.Context(), k); !errors.Is(err, ErrUnknownBackend) {
			t.Errorf("Drain of an unknown backend: %v, want ErrUnknownBackend", err)
		}
		if err := p.Undrain(k); !errors.Is(err, ErrUnknownBackend) {
			t.Errorf("Undrain of an unknown backend: %v, want ErrUnknownBackend", err)
		}
	})
}

// TestPausedClaimsOutwaitAnOutage: while paused, a claim waits even when
// no backend is online (a switchover takes them down for a while); after
// Resume such a claim fails at once, as ever.
func TestPausedClaimsOutwaitAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(1)
		p, fc := newTestPool(t, Policy{MaxSlots: 2}, bs...)
		fc.setMode(bs[0].Addr, backendMode{connectErr: errors.New("fake: connection refused")})
		time.Sleep(time.Second)
		synctest.Wait()
		if _, err := p.Claim(t.Context()); !errors.Is(err, ErrNoBackendsOnline) {
			t.Fatalf("claim with the only backend down: %v, want ErrNoBackendsOnline", err)
		}
		if err := p.Pause(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := p.Claim(ctx); !errors.Is(err, ErrClaimTimeout) {
			t.Errorf("claim on a paused pool with the only backend down: %v, want it to wait (ErrClaimTimeout)", err)
		}
		got := make(chan error, 1)
		go func() {
			_, err := p.Claim(t.Context())
			got <- err
		}()
		time.Sleep(time.Second)
		p.Resume()
		if err := <-got; !errors.Is(err, ErrNoBackendsOnline) {
			t.Errorf("claim queued while paused, after Resume: %v, want ErrNoBackendsOnline", err)
		}
	})
}

// Drain, Undrain, Pause and Resume each tell the observer once, however
// often they are called.
func TestRuntimeControlEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var kinds []EventKind
		obs := ObserverFunc(func(e Event) {
			switch e.Kind {
			case EventBackendDrained, EventBackendUndrained, EventPaused, EventResumed:
				mu.Lock()
				kinds = append(kinds, e.Kind)
				mu.Unlock()
			}
		})
		bs := backends(2)
		p, _ := newTestPool(t, Policy{MaxSlots: 4, Observer: obs}, bs...)
		synctest.Wait()
		for range 2 {
			if err := p.Drain(t.Context(), bs[0].Key()); err != nil {
				t.Fatalf("Drain: %v", err)
			}
		}
		for range 2 {
			if err := p.Undrain(bs[0].Key()); err != nil {
				t.Fatalf("Undrain: %v", err)
			}
		}
		for range 2 {
			if err := p.Pause(t.Context()); err != nil {
				t.Fatalf("Pause: %v", err)
			}
		}
		p.Resume()
		p.Resume()
		mu.Lock()
		defer mu.Unlock()
		want := []EventKind{EventBackendDrained, EventBackendUndrained, EventPaused, EventResumed}
		if !slices.Equal(kinds, want) {
			t.Errorf("events %v, want %v", kinds, want)
		}
	})
}
