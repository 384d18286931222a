package pool

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// newTestPool starts a pool over a fake connector and a static resolver.
func newTestPool(t *testing.T, pol Policy, bs ...resolver.Backend) (*Pool[*fakeConn], *fakeConnector) {
	t.Helper()
	r, err := resolver.NewStatic(bs...)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeConnector()
	p, err := New(r, fc, pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Shutdown waits for the claims a test's goroutines still hold.
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if n := fc.openConns(); n != 0 {
			t.Errorf("%d connections open after Close", n)
		}
		fc.check(t)
	})
	return p, fc
}

func TestClaimRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{}, backends(3)...)
		c := claimFrom(t, p, t.Context())
		if got := c.Backend().Addr; got != c.Conn().backend {
			t.Errorf("Backend().Addr = %q, want the connection's backend %q", got, c.Conn().backend)
		}
		release(c)
		// The first claim grew the pool by one, which it keeps while that
		// peak of one claim counts (recentRebalances periods); then a
		// periodic rebalance takes it back to the spares.
		time.Sleep((recentRebalances + 2) * DefaultRebalanceInterval)
		synctest.Wait()
		st := p.Stats()
		if len(st.Backends) != 3 {
			t.Fatalf("Stats has %d backends, want 3", len(st.Backends))
		}
		total := 0
		for _, b := range st.Backends {
			if b.Health != HealthOnline {
				t.Errorf("backend %s is %v, want online", b.Backend, b.Health)
			}
			if b.Slots() == 0 {
				t.Errorf("backend %s has no slots", b.Backend)
			}
			total += b.Slots()
		}
		if total != DefaultSpares {
			t.Errorf("pool has %d slots with nothing claimed, want the %d spares", total, DefaultSpares)
		}
		if fc.recycles.Load() != 1 {
			t.Errorf("OnRecycle ran %d times, want 1", fc.recycles.Load())
		}
	})
}

func TestSequentialClaimsSpreadEvenly(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(map[bool]string{false: "background-recycle", true: "inline-recycle"}[inline], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, _ := newTestPool(t, Policy{Recycle: recycleMode(inline)}, backends(3)...)
				counts := map[string]int{}
				for range 3000 {
					c := claimFrom(t, p, t.Context())
					counts[c.Backend().Addr]++
					release(c)
					synctest.Wait()
				}
				for addr, n := range counts {
					if n < 990 || n > 1010 {
						t.Errorf("backend %s served %d of 3000 claims, want 1000±10", addr, n)
					}
				}
				if len(counts) != 3 {
					t.Errorf("claims went to %d backends, want 3", len(counts))
				}
			})
		})
	}
}

func TestWeightedSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		for i := range bs {
			bs[i].Weight = uint16(i + 1)
		}
		p, _ := newTestPool(t, Policy{Recycle: RecycleInline}, bs...)
		synctest.Wait() // let the first connections open
		counts := map[string]int{}
		for range 6000 {
			c := claimFrom(t, p, t.Context())
			counts[c.Backend().Addr]++
			release(c)
		}
		for i, b := range bs {
			want := 1000 * (i + 1)
			if n := counts[b.Addr]; n < want*95/100 || n > want*105/100 {
				t.Errorf("backend %s (weight %d) served %d of 6000 claims, want about %d", b.Addr, b.Weight, n, want)
			}
		}
	})
}

func TestConcurrentClaimsSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{Recycle: RecycleInline, MaxSlots: 30}, backends(3)...)
		counts := make(chan map[string]int)
		for range 24 {
			go func() {
				m := map[string]int{}
				for range 100 {
					c, err := p.Claim(t.Context())
					if err != nil {
						t.Error(err)
						break
					}
					m[c.Backend().Addr]++
					time.Sleep(time.Millisecond) // hold it, in virtual time
					c.Release()
				}
				counts <- m
			}()
		}
		total := map[string]int{}
		for range 24 {
			for k, v := range <-counts {
				total[k] += v
			}
		}
		for addr, n := range total {
			if n < 700 || n > 900 {
				t.Errorf("backend %s served %d of 2400 claims, want 800±100", addr, n)
			}
		}
	})
}

func TestPriorityTiers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		bs[2].Priority = 10
		p, fc := newTestPool(t, Policy{Recycle: RecycleInline, BackoffMax: time.Second}, bs...)
		for range 30 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Priority != 0 {
				t.Fatalf("claim went to %s of priority %d while priority 0 is healthy", c.Backend().Addr, c.Backend().Priority)
			}
			release(c)
		}
		if n := fc.openTo(bs[2].Addr); n != 0 {
			t.Errorf("backup-tier backend has %d connections, want 0", n)
		}
		// The first tier dies: claims move to the second.
		for _, b := range bs[:2] {
			fc.setMode(b.Addr, backendMode{connectErr: errors.New("refused"), checkErr: errors.New("dead")})
		}
		// Claims find the dead connections one by one and discard them,
		// until the first tier is offline and claims reach the second.
		for i := 0; ; i++ {
			if i == 100 {
				t.Fatal("claims never reached the backup tier")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			c, err := p.Claim(ctx)
			cancel()
			if err != nil {
				t.Fatalf("Claim after the first tier died: %v", err)
			}
			if c.Backend().Addr == bs[2].Addr {
				c.Release()
				break
			}
			c.Discard(errors.New("connection reset"))
		}
		for range 10 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr != bs[2].Addr {
				t.Errorf("claim went to %s, want the backup %s", c.Backend().Addr, bs[2].Addr)
			}
			release(c)
		}
	})
}

func TestCapNeverExceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{MaxSlots: 5, Spares: 3}, backends(3)...)
		done := make(chan struct{})
		for range 20 {
			go func() {
				defer func() { done <- struct{}{} }()
				for range 20 {
					c, err := p.Claim(t.Context())
					if err != nil {
						t.Error(err)
						return
					}
					time.Sleep(time.Millisecond)
					c.Release()
				}
			}()
		}
		for range 20 {
			<-done
		}
		if fc.peakOpen() > 5 {
			t.Errorf("%d connections were open at once, cap is 5", fc.peakOpen())
		}
		synctest.Wait()
		if st := p.Stats(); totalSlots(st) > 5 {
			t.Errorf("pool has %d slots, cap is 5", totalSlots(st))
		}
	})
}

func totalSlots(st Stats) int {
	n := 0
	for _, b := range st.Backends {
		n += b.Slots()
	}
	return n
}

func TestOfflineBackendProbedAndRefilled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		dead := bs[0].Addr
		fc := newFakeConnector()
		fc.setMode(dead, backendMode{connectErr: errors.New("connection refused")})
		r, _ := resolver.NewStatic(bs...)
		// Without the connect-rate limit and slow start (see
		// warm_test.go), a revived backend gets its share at once.
		p, err := New(r, fc, Policy{BackoffMax: 2 * time.Second, ConnectRate: -1, SlowStart: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		time.Sleep(time.Second)
		synctest.Wait()
		st := p.Stats()
		b := st.Backends[0]
		if b.Backend.Addr != dead || b.Health != HealthOffline {
			t.Fatalf("backend %s is %v, want %s offline", b.Backend.Addr, b.Health, dead)
		}
		if b.Slots() != 1 {
			t.Errorf("offline backend has %d slots, want 1 probing slot", b.Slots())
		}
		if !strings.Contains(b.LastError, "connection refused") {
			t.Errorf("offline backend's LastError = %q, want the connect error", b.LastError)
		}
		// A claim limited to the dead backend waits, since what a filter
		// accepts may change while others are online, and then says the
		// backend is offline.
		only := func(b resolver.Backend) bool { return b.Addr == dead }
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err = p.ClaimFiltered(ctx, only)
		cancel()
		if !errors.Is(err, ErrClaimTimeout) || !strings.Contains(err.Error(), dead+" offline") {
			t.Errorf("claim for the offline backend: %v, want ErrClaimTimeout saying %s is offline", err, dead)
		}
		// An unfiltered claim never waits for it.
		// Other claims never go there.
		for range 20 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == dead {
				t.Fatalf("claim went to the offline backend")
			}
			release(c)
		}
		// It comes back and gets slots again.
		fc.setMode(dead, backendMode{})
		time.Sleep(3 * time.Second)
		synctest.Wait()
		st = p.Stats()
		if b := st.Backends[0]; b.Health != HealthOnline || b.Idle < 2 {
			t.Errorf("revived backend is %v with %d idle slots, want online with its share", b.Health, b.Idle)
		}
		c, err := p.ClaimFiltered(t.Context(), only)
		if err != nil {
			t.Fatalf("claim for the revived backend: %v", err)
		}
		c.Release()
	})
}

func TestRemovedBackendDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeResolver()
		fc := newFakeConnector()
		p, err := New(fr, fc, Policy{Recycle: RecycleInline})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		bs := backends(3)
		fr.set(bs...)
		synctest.Wait()
		gone := bs[0].Addr
		var held Claim[*fakeConn]
		for {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == gone {
				held = c
				break
			}
			release(c)
		}
		fr.set(bs[1:]...)
		time.Sleep(200 * time.Millisecond) // past the rebalance delay
		synctest.Wait()
		if n := fc.openTo(gone); n != 1 {
			t.Errorf("removed backend has %d open connections, want only the claimed one", n)
		}
		for range 50 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == gone {
				t.Fatal("claim went to a removed backend")
			}
			release(c)
		}
		if held.Conn().closed.Load() {
			t.Error("claimed connection closed while still claimed")
		}
		release(held)
		synctest.Wait()
		if n := fc.openTo(gone); n != 0 {
			t.Errorf("removed backend has %d open connections after its last claim came back, want 0", n)
		}
		for _, b := range p.Stats().Backends {
			if b.Backend.Addr == gone {
				t.Errorf("removed backend still in Stats: %+v", b)
			}
		}
		fc.check(t)
	})
}

func TestDiscardRechecksIdleSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{Recycle: RecycleInline, Spares: 6}, backends(1)...)
		synctest.Wait()
		c := claimFrom(t, p, t.Context())
		checksBefore := fc.checks.Load()
		idle := p.Stats().Backends[0].Idle
		c.Conn().claimed.Store(false)
		c.Discard(errors.New("connection reset by peer"))
		synctest.Wait()
		if !c.Conn().closed.Load() {
			t.Error("discarded connection not closed")
		}
		if got := fc.checks.Load() - checksBefore; got != int64(idle) {
			t.Errorf("%d health checks after a discard, want one per idle slot (%d)", got, idle)
		}
		b := p.Stats().Backends[0]
		if b.Suspect {
			t.Error("backend still suspected after its idle connections passed their checks")
		}
		if !strings.Contains(b.LastError, "connection reset by peer") {
			t.Errorf("LastError = %q, want the discard reason", b.LastError)
		}
		// Double release of the same claim does nothing.
		c.Release()
		c.Discard(nil)
	})
}

func TestClaimTimeoutSaysWhatBackendsDid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeConnector()
		bs := backends(2)
		fc.setMode(bs[0].Addr, backendMode{hang: true})
		fc.setMode(bs[1].Addr, backendMode{hang: true})
		r, _ := resolver.NewStatic(bs...)
		p, err := New(r, fc, Policy{ClaimTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		start := time.Now()
		_, err = p.Claim(t.Context())
		if !errors.Is(err, ErrClaimTimeout) {
			t.Fatalf("Claim: %v, want ErrClaimTimeout", err)
		}
		if waited := time.Since(start); waited != 2*time.Second {
			t.Errorf("claim waited %v, want the 2s claim timeout", waited)
		}
		var ce *ClaimError
		if !errors.As(err, &ce) || len(ce.Backends) != 2 {
			t.Fatalf("error %v is not a ClaimError naming 2 backends", err)
		}
		msg := err.Error()
		for _, want := range []string{bs[0].Addr, bs[1].Addr, "connecting"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		// The claim's own deadline wins when it is sooner.
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err = p.Claim(ctx)
		if !errors.Is(err, ErrClaimTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Claim with a 500ms deadline: %v, want ErrClaimTimeout and context.DeadlineExceeded", err)
		}
		if st := p.Stats(); st.Timeouts != 2 {
			t.Errorf("Stats().Timeouts = %d, want 2", st.Timeouts)
		}
	})
}

func TestWaitersServedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: 1, Spares: -1, Recycle: RecycleInline}, backends(1)...)
		first := claimFrom(t, p, t.Context())
		order := make(chan int, 5)
		for i := range 5 {
			go func() {
				c, err := p.Claim(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				order <- i
				time.Sleep(time.Millisecond)
				c.Release()
			}()
			synctest.Wait() // queue them in order
		}
		if w := p.Stats().Waiting; w != 5 {
			t.Errorf("Stats().Waiting = %d, want 5", w)
		}
		release(first)
		for want := range 5 {
			if got := <-order; got != want {
				t.Errorf("waiter %d served in place %d", got, want)
			}
		}
	})
}

func TestTooManyWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: 1, Spares: -1, MaxWaiters: 2}, backends(1)...)
		held := claimFrom(t, p, t.Context())
		ctx, cancel := context.WithCancel(t.Context())
		for range 2 {
			go p.Claim(ctx)
		}
		synctest.Wait()
		if _, err := p.Claim(t.Context()); !errors.Is(err, ErrTooManyWaiters) {
			t.Errorf("third waiter: %v, want ErrTooManyWaiters", err)
		}
		cancel()
		release(held)
	})
}

func TestNoBackends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeResolver()
		p, err := New(fr, newFakeConnector(), Policy{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		// Before the resolver reports, a claim waits for it.
		got := make(chan error)
		go func() {
			_, err := p.Claim(t.Context())
			got <- err
		}()
		synctest.Wait()
		fr.set()
		if err := <-got; !errors.Is(err, ErrNoBackends) {
			t.Errorf("claim while the resolver reports nothing: %v, want ErrNoBackends", err)
		}
		if _, err := p.Claim(t.Context()); !errors.Is(err, ErrNoBackends) {
			t.Errorf("claim with no backends: %v, want ErrNoBackends", err)
		}
	})
}

func TestShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeConnector()
		bs := backends(3)
		fc.setMode(bs[2].Addr, backendMode{connectErr: errors.New("refused")})
		r, _ := resolver.NewStatic(bs...)
		p, err := New(r, fc, Policy{MaxSlots: 4, Spares: 3, BackoffMin: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		held := claimFrom(t, p, t.Context())
		held2 := claimFrom(t, p, t.Context())
		// Fill the pool to its cap so a waiter queues.
		var more []Claim[*fakeConn]
		for {
			synctest.Wait()
			st := p.Stats()
			if st.Backends[0].Idle+st.Backends[1].Idle == 0 && totalSlots(st) == 4 {
				break
			}
			more = append(more, claimFrom(t, p, t.Context()))
		}
		waiterErr := make(chan error, 1)
		go func() {
			_, err := p.Claim(t.Context())
			waiterErr <- err
		}()
		synctest.Wait()
		if w := p.Stats().Waiting; w != 1 {
			t.Fatalf("Stats().Waiting = %d, want 1", w)
		}
		// Shut down with claims out: the waiter fails, Shutdown waits
		// for the claims, in virtual time with a backend in backoff.
		closed := make(chan error)
		go func() { closed <- p.Shutdown(context.Background()) }()
		synctest.Wait()
		if err := <-waiterErr; !errors.Is(err, ErrClosed) {
			t.Errorf("waiting claim when the pool closed: %v, want ErrClosed", err)
		}
		for _, c := range more {
			release(c)
		}
		synctest.Wait()
		if n := fc.openConns(); n != 2 {
			t.Errorf("%d connections open while Shutdown waits for 2 claims", n)
		}
		if _, err := p.Claim(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Claim after Shutdown: %v, want ErrClosed", err)
		}
		release(held)
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Shutdown returned %v with a claim still out", err)
		default:
		}
		// Close meanwhile returns at once, and Shutdown keeps waiting.
		if err := p.Close(); err != nil {
			t.Errorf("Close during Shutdown: %v", err)
		}
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Shutdown returned %v after Close, with a claim still out", err)
		default:
		}
		release(held2)
		if err := <-closed; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if n := fc.openConns(); n != 0 {
			t.Errorf("%d connections open after Shutdown", n)
		}
		// Idempotent.
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
		fc.check(t)
		// synctest.Test fails if any goroutine of the pool is left.
	})
}

// TestCloseLeavesClaimsOut checks Close's contract, database/sql's: it
// returns at once with claims out, closes idle connections then, and each
// claimed one when its claim ends.
func TestCloseLeavesClaimsOut(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run("inline="+strconv.FormatBool(inline), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, fc := newTestPool(t, Policy{Spares: 3, Recycle: recycleMode(inline)}, backends(2)...)
				held := claimFrom(t, p, t.Context())
				held2 := claimFrom(t, p, t.Context())
				synctest.Wait()
				if fc.openConns() <= 2 {
					t.Fatalf("%d connections open, want the 2 claimed and spares", fc.openConns())
				}
				start := time.Now()
				if err := p.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("Close with claims out took %v, want no wait", d)
				}
				if n := fc.openConns(); n != 2 {
					t.Errorf("%d connections open after Close, want the 2 claimed", n)
				}
				if _, err := p.Claim(t.Context()); !errors.Is(err, ErrClosed) {
					t.Errorf("Claim after Close: %v, want ErrClosed", err)
				}
				release(held)
				if !held.Conn().closed.Load() || fc.openConns() != 1 {
					t.Errorf("connection released after Close not closed at once (%d open)", fc.openConns())
				}
				held2.Conn().claimed.Store(false)
				held2.Discard(errors.New("broken"))
				if n := fc.openConns(); n != 0 {
					t.Errorf("%d connections open once every claim ended", n)
				}
				if err := p.Close(); err != nil {
					t.Errorf("second Close: %v", err)
				}
			})
		})
	}
}

func TestShutdownForcesClaimsAfterDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{}, backends(1)...)
		held := claimFrom(t, p, t.Context())
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := p.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a claim out past its deadline: %v, want DeadlineExceeded", err)
		}
		if !held.Conn().closed.Load() || fc.openConns() != 0 {
			t.Error("claimed connection not closed by Shutdown after the deadline")
		}
		held.Release() // late release: no double close
	})
}

func TestHealthCheckReplacesBadConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{Spares: 1, HealthInterval: 10 * time.Second}, backends(1)...)
		synctest.Wait()
		c := claimFrom(t, p, t.Context())
		bad := c.Conn()
		release(c)
		synctest.Wait()
		connects := fc.connects.Load()
		bad.broken.Store(true) // dies while idle
		time.Sleep(12 * time.Second)
		synctest.Wait()
		if !bad.closed.Load() {
			t.Fatal("connection that fails its health check not closed")
		}
		c = claimFrom(t, p, t.Context())
		if c.Conn() == bad {
			t.Error("claimed the connection that failed its health check")
		}
		release(c)
		if n := fc.connects.Load() - connects; n != 1 {
			t.Errorf("%d connects, want 1 (one replacement)", n)
		}
	})
}

func TestHungHealthCheckTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		p, fc := newTestPool(t, Policy{HealthInterval: 5 * time.Second, HealthTimeout: time.Second, ConnectTimeout: 2 * time.Second, BackoffMax: time.Second}, bs...)
		synctest.Wait()
		fc.setMode(bs[0].Addr, backendMode{hang: true})
		time.Sleep(30 * time.Second)
		synctest.Wait()
		b := p.Stats().Backends[0]
		if b.Idle != 0 || b.Health != HealthOffline {
			t.Errorf("hung backend: %d idle, %v; want 0 idle, offline", b.Idle, b.Health)
		}
		for range 10 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == bs[0].Addr {
				t.Fatal("claim went to the hung backend")
			}
			release(c)
		}
	})
}

func TestLifetimeAndIdleTimeReplaceConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{Spares: 1, MaxLifetime: time.Minute, MaxIdleTime: -1, HealthInterval: -1}, backends(1)...)
		synctest.Wait()
		c := claimFrom(t, p, t.Context())
		first := c.Conn()
		release(c)
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if !first.closed.Load() {
			t.Error("connection past MaxLifetime not closed")
		}
		if fc.openConns() != 1 {
			t.Errorf("%d connections open, want the 1 replacement", fc.openConns())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{Spares: 1, MaxLifetime: -1, MaxIdleTime: time.Minute, HealthInterval: -1}, backends(1)...)
		synctest.Wait()
		c := claimFrom(t, p, t.Context())
		first := c.Conn()
		release(c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if first.closed.Load() {
			t.Error("connection closed before MaxIdleTime")
		}
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if !first.closed.Load() {
			t.Error("connection idle past MaxIdleTime not closed")
		}
		if fc.openConns() != 1 {
			t.Errorf("%d connections open, want the 1 replacement", fc.openConns())
		}
	})
}

type acquireConnector struct {
	*fakeConnector
	fails int
}

func (a *acquireConnector) OnAcquire(ctx context.Context, c *fakeConn) error {
	if a.fails > 0 {
		a.fails--
		return errors.New("session setup failed")
	}
	return nil
}

func TestAcquireHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ac := &acquireConnector{fakeConnector: newFakeConnector(), fails: 2}
		r, _ := resolver.NewStatic(backends(1)...)
		p, err := New[*fakeConn](r, ac, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, err := p.Claim(t.Context())
		if err != nil {
			t.Fatalf("Claim with a hook that fails twice: %v", err)
		}
		c.Release()
		ac.fails = 5
		if _, err := p.Claim(t.Context()); err == nil || !strings.Contains(err.Error(), "session setup failed") {
			t.Errorf("Claim with a hook that keeps failing: %v, want its error", err)
		}
	})
}

func TestBadPolicy(t *testing.T) {
	r, _ := resolver.NewStatic(backends(1)...)
	for _, pol := range []Policy{
		{MaxSlots: -1},
		{BackoffMin: time.Second, BackoffMax: time.Millisecond},
		{ClaimTimeout: -time.Second},
	} {
		if _, err := New(r, newFakeConnector(), pol); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("New(%+v): %v, want ErrBadPolicy", pol, err)
		}
	}
}

func TestOldestClaimInStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{}, backends(1)...)
		c := claimFrom(t, p, t.Context())
		time.Sleep(45 * time.Minute)
		// Claims read a clock that lags by at most the rebalance interval.
		if got := p.Stats().Backends[0].OldestClaim; got < 45*time.Minute || got > 45*time.Minute+DefaultRebalanceInterval {
			t.Errorf("OldestClaim = %v, want 45m (+ up to %v)", got, DefaultRebalanceInterval)
		}
		release(c)
	})
}

func TestSlowBackendDoesNotHoldUpClaims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		fc := newFakeConnector()
		fc.setMode(bs[0].Addr, backendMode{delay: 5 * time.Second})
		r, _ := resolver.NewStatic(bs...)
		p, err := New(r, fc, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		start := time.Now()
		for range 10 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr != bs[1].Addr {
				t.Errorf("claim went to the backend still connecting")
			}
			release(c)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("claims waited %v for a slow backend while another was ready", waited)
		}
		// Once the slow backend is connected it takes its share.
		time.Sleep(6 * time.Second)
		synctest.Wait()
		seen := map[string]bool{}
		for range 10 {
			c := claimFrom(t, p, t.Context())
			seen[c.Backend().Addr] = true
			release(c)
		}
		if !seen[bs[0].Addr] {
			t.Error("slow backend got no claims once connected")
		}
	})
}
