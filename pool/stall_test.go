package pool

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// abortConnector is a fakeConnector that can abort claimed connections:
// the test's holder of one sees it on the connection's channel.
type abortConnector struct {
	*fakeConnector
	mu      sync.Mutex
	aborted map[*fakeConn]time.Time
}

func (a *abortConnector) Abort(c *fakeConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.aborted[c]; !ok {
		a.aborted[c] = time.Now()
	}
}

func (a *abortConnector) abortedAt(c *fakeConn) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.aborted[c]
	return at, ok
}

func (a *abortConnector) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.aborted)
}

// stallPool starts a pool with the default SuspectAfter and StallTimeout
// over bs with an aborting connector, and waits until it has connected.
func stallPool(t *testing.T, pol Policy, bs ...resolver.Backend) (*Pool[*fakeConn], *abortConnector, *offlineWatch) {
	t.Helper()
	r, _ := resolver.NewStatic(bs...)
	ac := &abortConnector{fakeConnector: newFakeConnector(), aborted: map[*fakeConn]time.Time{}}
	w := newOfflineWatch()
	pol.Observer = w
	p, err := New[*fakeConn](r, ac, pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	synctest.Wait()
	return p, ac, w
}

// claimOn claims n connections to addr.
func claimOn(t *testing.T, p *Pool[*fakeConn], addr string, n int) []Claim[*fakeConn] {
	t.Helper()
	var cs []Claim[*fakeConn]
	for range n {
		c, err := p.ClaimFiltered(t.Context(), func(b resolver.Backend) bool { return b.Addr == addr })
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

// holdUntilAborted holds c, as a query in flight would, until the pool
// aborts it or d passes, and reports when the abort came, if it did.
func holdUntilAborted(ac *abortConnector, c Claim[*fakeConn], d time.Duration) (aborted time.Time, ok bool) {
	claimed := time.Now()
	for time.Since(claimed) < d {
		if at, ok := ac.abortedAt(c.Conn()); ok {
			c.Discard(nil)
			return at, true
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Release()
	return time.Time{}, false
}

// A backend that stops answering while queries are out on it is found
// stalled within SuspectAfter + StallTimeout (2 s by default) of the
// last answer, whether it has an idle connection to probe or every
// connection is claimed (a probe connection then goes unanswered): the
// claimed connections are aborted and the backend is offline.
func TestStalledBackendAborted(t *testing.T) {
	for _, tt := range []struct {
		name   string
		pol    Policy
		claims int
	}{
		{"idle connection probed", Policy{MaxSlots: 8}, 3},
		{"every connection claimed", Policy{MaxSlots: 4, MaxPerBackend: 2, Spares: 4}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bs := backends(2)
				p, ac, w := stallPool(t, tt.pol, bs...)
				stalled := bs[0].Addr
				// Queries come and go for a while; then the server
				// freezes with tt.claims of them in flight.
				for range 20 {
					c, err := p.ClaimFiltered(t.Context(), func(b resolver.Backend) bool { return b.Addr == stalled })
					if err != nil {
						t.Fatal(err)
					}
					time.Sleep(50 * time.Millisecond)
					c.Release()
				}
				cs := claimOn(t, p, stalled, tt.claims)
				ac.setMode(stalled, backendMode{hang: true})
				frozeAt := time.Now()
				var wg sync.WaitGroup
				for _, c := range cs {
					wg.Go(func() {
						at, ok := holdUntilAborted(ac, c, 10*time.Second)
						if !ok {
							t.Error("a claim on the stalled backend was not aborted within 10 s")
						} else if d := at.Sub(frozeAt); d > 2100*time.Millisecond {
							t.Errorf("claim aborted %v after the backend froze, want within 2 s", d)
						}
					})
				}
				wg.Wait()
				if at, err, ok := w.when(stalled); !ok || err != errStalled || at.Sub(frozeAt) > 2100*time.Millisecond {
					t.Errorf("stalled backend offline at %v after the freeze (%v, %v), want within 2 s with %v", at.Sub(frozeAt), ok, err, errStalled)
				}
				// Claims go to the other backend meanwhile, and nothing
				// of it was aborted.
				c := claimFrom(t, p, t.Context())
				if c.Backend().Addr == stalled {
					t.Error("a claim went to the stalled backend")
				}
				release(c)
				if n := ac.count(); n != tt.claims {
					t.Errorf("%d connections aborted, want the %d on the stalled backend", n, tt.claims)
				}
				if peak := ac.peakOpen(); peak > tt.pol.MaxSlots {
					t.Errorf("%d connections open at once, probes included, cap %d", peak, tt.pol.MaxSlots)
				}
			})
		})
	}
}

// A backend busy with long queries is never cut: it answers its probes,
// with an idle connection to probe, or, with every connection of the pool
// claimed and none coming back, there is no room for a probe under
// MaxSlots and so no probe, and no verdict.
func TestBusyBackendNeverCut(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		pol                  Policy
		claims               int
		minProbes, maxProbes int64
	}{
		{"idle connection probed", Policy{MaxSlots: 4}, 2, 5, 15},
		{"every connection claimed", Policy{MaxSlots: 2, Spares: -1}, 2, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bs := backends(1)
				p, ac, w := stallPool(t, tt.pol, bs...)
				cs := claimOn(t, p, bs[0].Addr, tt.claims)
				// Probes are slow (a connection attempt and a check
				// take 400 ms each) but answer within StallTimeout.
				ac.setMode(bs[0].Addr, backendMode{delay: 400 * time.Millisecond})
				checks := ac.checks.Load()
				var wg sync.WaitGroup
				for _, c := range cs {
					wg.Go(func() {
						if _, ok := holdUntilAborted(ac, c, 15*time.Second); ok {
							t.Error("a 15 s query on a backend that answers its probes was aborted")
						}
					})
				}
				wg.Wait()
				if _, _, ok := w.when(bs[0].Addr); ok {
					t.Error("busy backend declared offline")
				}
				probes := ac.checks.Load() - checks // each probe checks once
				if probes < tt.minProbes || probes > tt.maxProbes {
					t.Errorf("%d probes in 15 s of long queries, want %d to %d", probes, tt.minProbes, tt.maxProbes)
				}
				if peak := ac.peakOpen(); peak > tt.pol.MaxSlots {
					t.Errorf("%d connections open at once, probes included, cap %d", peak, tt.pol.MaxSlots)
				}
			})
		})
	}
}

// With every connection of the pool claimed and claims queued (so none
// is ever idle), a probe of a stalled backend takes the room of the next
// claimed connection to come back: the stall is found at once, and
// MaxSlots holds throughout.
func TestProbeRoomFromReturningClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		pol := Policy{MaxSlots: 2, MaxPerBackend: 1, Spares: -1}
		p, ac, w := stallPool(t, pol, bs...)
		stalled, busy := bs[0].Addr, bs[1].Addr
		c := claimOn(t, p, stalled, 1)[0]
		// Two workers share the busy backend's one connection, so one of
		// them always waits and every release is handed straight on.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					cl, err := p.ClaimFiltered(t.Context(), func(b resolver.Backend) bool { return b.Addr == busy })
					if err != nil {
						t.Error(err)
						return
					}
					time.Sleep(100 * time.Millisecond)
					release(cl)
				}
			})
		}
		ac.setMode(stalled, backendMode{hang: true})
		frozeAt := time.Now()
		at, ok := holdUntilAborted(ac, c, 10*time.Second)
		close(stop)
		wg.Wait()
		if !ok {
			t.Fatal("the claim on the stalled backend was not aborted within 10 s")
		}
		if d := at.Sub(frozeAt); d > 2300*time.Millisecond {
			t.Errorf("claim aborted %v after the backend froze, want within 2.3 s", d)
		}
		if _, err, ok := w.when(stalled); !ok || err != errStalled {
			t.Errorf("stalled backend not offline (%v, %v)", ok, err)
		}
		if peak := ac.peakOpen(); peak > pol.MaxSlots {
			t.Errorf("%d connections open at once, probes included, cap %d", peak, pol.MaxSlots)
		}
	})
}

// A probe that takes the room of a slot backing off does not end that
// backoff: the slot that takes its place waits it out.
func TestProbeRoomKeepsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		good, dead := bs[0].Addr, bs[1].Addr
		log := &attemptLog{}
		pol := Policy{MaxSlots: 2, MaxPerBackend: 1, Spares: -1, BackoffMin: time.Minute, BackoffMax: time.Minute, Observer: log}
		r, _ := resolver.NewStatic(bs...)
		fc := newFakeConnector()
		fc.setMode(dead, backendMode{connectErr: errors.New("refused")})
		p, err := New[*fakeConn](r, fc, pol)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		synctest.Wait()
		start := time.Now()
		// The good backend's only connection is out for 30 s: it is
		// probed every second or two, with no room but the dead
		// backend's slot, which rebalances put back.
		c := claimOn(t, p, good, 1)[0]
		checks := fc.checks.Load()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if fc.checks.Load() == checks {
			t.Fatal("no probe of the backend with its only connection out for 30 s")
		}
		if n := log.between(dead, start.Add(-time.Minute), start.Add(30*time.Second)); n != 1 {
			t.Errorf("%d connection attempts on the refusing backend in its first minute, want 1 (BackoffMin is a minute)", n)
		}
		if peak := fc.peakOpen(); peak > pol.MaxSlots {
			t.Errorf("%d connections open at once, probes included, cap %d", peak, pol.MaxSlots)
		}
		release(c)
	})
}

// With StallTimeout negative nothing is aborted.
func TestStallTimeoutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		p, ac, _ := stallPool(t, Policy{StallTimeout: -1}, bs...)
		c := claimOn(t, p, bs[0].Addr, 1)[0]
		ac.setMode(bs[0].Addr, backendMode{hang: true})
		if _, ok := holdUntilAborted(ac, c, 5*time.Second); ok {
			t.Error("a claim was aborted with StallTimeout off")
		}
	})
}

// A stalled backend whose only connection is still claimed (the
// application has not yet given back the aborted connection) comes back
// online once a probe answers again.
func TestStalledBackendBackOnlineByProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		// The fake's hung probe waits for ConnectTimeout, where a real
		// server resumed would answer it.
		p, ac, w := stallPool(t, Policy{MaxSlots: 2, MaxPerBackend: 1, Spares: -1, ConnectTimeout: 2 * time.Second}, bs...)
		c := claimOn(t, p, bs[0].Addr, 1)[0]
		ac.setMode(bs[0].Addr, backendMode{hang: true})
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if _, _, ok := w.when(bs[0].Addr); !ok {
			t.Fatal("backend not stalled 3 s after it stopped answering")
		}
		if _, ok := ac.abortedAt(c.Conn()); !ok {
			t.Error("the claimed connection was not aborted")
		}
		ac.setMode(bs[0].Addr, backendMode{})
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if b := backendStats(t, p, bs[0].Addr); b.Health != HealthOnline {
			t.Errorf("4 s after it answers again, with its only connection still claimed: %v, want online", b.Health)
		}
		c.Discard(nil)
	})
}
