package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// A Recheck while the backend's only connection is claimed checks that
// connection when it comes back, and the suspicion ends there.
func TestRecheckWithEveryConnectionClaimed(t *testing.T) {
	for _, inline := range []bool{true, false} {
		t.Run(recycleMode(inline).String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bs := backends(1)
				p, fc := newTestPool(t, Policy{MaxSlots: 1, Spares: -1, Recycle: recycleMode(inline)}, bs...)
				synctest.Wait()
				c := claimFrom(t, p, t.Context())
				p.Recheck(bs[0].Key())
				if b := backendStats(t, p, bs[0].Addr); !b.Suspect {
					t.Fatal("not suspect right after Recheck")
				}
				checks := fc.checks.Load()
				release(c)
				synctest.Wait()
				if b := backendStats(t, p, bs[0].Addr); b.Suspect || b.Idle != 1 {
					t.Errorf("after the claimed connection came back: suspect %v, %d idle; want not suspect, 1 idle", b.Suspect, b.Idle)
				}
				if fc.checks.Load() == checks {
					t.Error("the connection that came back was not checked")
				}
			})
		})
	}
}

// huntWatch records the hunts a pool reports.
type huntWatch struct {
	mu          sync.Mutex
	lost, found []time.Time
	without     []time.Duration
}

func (w *huntWatch) Observe(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e.Kind {
	case EventPrimaryLost:
		w.lost = append(w.lost, time.Now())
	case EventPrimaryFound:
		w.found = append(w.found, time.Now())
		w.without = append(w.without, e.Duration)
	}
}

func (w *huntWatch) counts() (lost, found int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lost), len(w.found)
}

// failoverPool starts a pool over a primary (bs[0]) and two replicas that
// report their roles, with default health checks (every 30 s), and waits
// until it has connected.
func failoverPool(t *testing.T, pol Policy) (*Pool[*fakeConn], *roleConnector, *fakeResolver, []resolver.Backend, *huntWatch) {
	t.Helper()
	bs := backends(3)
	rc := newRoleConnector()
	rc.setRole(bs[0].Addr, resolver.RolePrimary)
	rc.setRole(bs[1].Addr, resolver.RoleReplica)
	rc.setRole(bs[2].Addr, resolver.RoleReplica)
	r := newFakeResolver()
	w := &huntWatch{}
	pol.Observer = w
	if pol.Recycle == RecycleDefault {
		pol.Recycle = RecycleInline
	}
	p, err := New[*fakeConn](r, rc, pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	r.set(bs...)
	synctest.Wait()
	if !p.Usable(primaries) {
		t.Fatal("no primary after connecting")
	}
	return p, rc, r, bs, w
}

// writer claims primary connections one after another, each held 10 ms,
// until stop is closed, and records which backend served each and when.
type writer struct {
	mu     sync.Mutex
	served []timedClaim
	errs   []error
	done   chan struct{}
}

type timedClaim struct {
	at   time.Time
	addr string
}

func startWriter(p *Pool[*fakeConn], stop <-chan struct{}) *writer {
	w := &writer{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := p.ClaimFiltered(context.Background(), primaries)
			w.mu.Lock()
			if err != nil {
				w.errs = append(w.errs, err)
			} else {
				w.served = append(w.served, timedClaim{time.Now(), c.Backend().Addr})
			}
			w.mu.Unlock()
			if err == nil {
				time.Sleep(10 * time.Millisecond)
				c.Release()
			}
		}
	}()
	return w
}

// firstOn returns when w was first served by addr at or after from.
func (w *writer) firstOn(addr string, from time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.served {
		if c.addr == addr && !c.at.Before(from) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// Each way of losing the primary starts a hunt that finds the promoted
// replica within PrimaryProbeInterval of its promotion, with health
// checks 30 s apart; claims for the primary wait meanwhile and none
// fails or reaches a backend that is not the primary.
func TestPrimaryHunt(t *testing.T) {
	tests := []struct {
		name string
		// lose loses the primary, bs[0], at the start of an outage
		// that lasts until bs[1] is promoted 2 s later.
		lose func(p *Pool[*fakeConn], rc *roleConnector, r *fakeResolver, bs []resolver.Backend)
	}{
		{"connections fail", func(p *Pool[*fakeConn], rc *roleConnector, r *fakeResolver, bs []resolver.Backend) {
			rc.setMode(bs[0].Addr, backendMode{connectErr: errors.New("connection refused"), checkErr: errors.New("broken")})
			c, err := p.ClaimFiltered(context.Background(), primaries)
			if err == nil {
				c.Discard(errors.New("connection reset"))
			}
		}},
		{"read-only error", func(p *Pool[*fakeConn], rc *roleConnector, r *fakeResolver, bs []resolver.Backend) {
			rc.setRole(bs[0].Addr, resolver.RoleReplica)
			p.SetRole(bs[0].Key(), resolver.RoleReplica)
		}},
		{"removed", func(p *Pool[*fakeConn], rc *roleConnector, r *fakeResolver, bs []resolver.Backend) {
			r.set(bs[1:]...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, rc, r, bs, w := failoverPool(t, Policy{})
				stop := make(chan struct{})
				wr := startWriter(p, stop)
				time.Sleep(time.Second)
				asked := rc.askedCount()
				tt.lose(p, rc, r, bs)
				lostAt := time.Now()
				time.Sleep(2 * time.Second)
				rc.setRole(bs[1].Addr, resolver.RolePrimary)
				promotedAt := time.Now()
				time.Sleep(2 * time.Second)
				close(stop)
				<-wr.done

				first, ok := wr.firstOn(bs[1].Addr, lostAt)
				if !ok {
					t.Fatalf("no primary claim reached the promoted %s", bs[1].Addr)
				}
				if d := first.Sub(promotedAt); d > DefaultPrimaryProbe+50*time.Millisecond {
					t.Errorf("first primary claim on the promoted backend %v after the promotion, want within %v", d, DefaultPrimaryProbe)
				}
				for _, c := range wr.served {
					// A removal is applied RebalanceDelay after the
					// resolver reports it.
					if c.at.After(lostAt.Add(DefaultRebalanceDelay)) && c.addr != bs[1].Addr {
						t.Errorf("a primary claim %v after the primary was lost went to %s", c.at.Sub(lostAt), c.addr)
					}
				}
				if len(wr.errs) > 0 {
					t.Errorf("%d primary claims failed, first: %v", len(wr.errs), wr.errs[0])
				}
				if lost, found := w.counts(); lost != 1 || found != 1 {
					t.Errorf("%d primary-lost and %d primary-found events, want 1 each", lost, found)
				}
				// A round every 250 to 500 ms asks each backend once.
				if n := rc.askedCount() - asked; n > 3*(2000/250+1)+6 {
					t.Errorf("%d role queries during the 2 s hunt, want about one per backend per round", n)
				}
			})
		})
	}
}

// Without a loss, no hunt: role queries follow only connections and
// health checks.
func TestNoHuntWhileThePrimaryServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, rc, _, _, w := failoverPool(t, Policy{})
		stop := make(chan struct{})
		wr := startWriter(p, stop)
		asked, connects := rc.askedCount(), rc.connects.Load()
		time.Sleep(20 * time.Second)
		close(stop)
		<-wr.done
		if n := int64(rc.askedCount()-asked) - (rc.connects.Load() - connects); n != 0 {
			t.Errorf("%d role queries beyond connection attempts in 20 s with health checks 30 s apart and no failure", n)
		}
		if lost, _ := w.counts(); lost != 0 {
			t.Errorf("%d primary-lost events without a failure", lost)
		}
	})
}

// A backend whose role query fails, or that says it is a replica, ends no
// hunt and gets no primary claim; the hunt goes on until a primary
// answers.
func TestHuntIgnoresBackendsThatAreNotPrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, rc, _, bs, w := failoverPool(t, Policy{})
		rc.mu.Lock()
		rc.fail[bs[2].Addr] = true
		rc.mu.Unlock()
		rc.setMode(bs[0].Addr, backendMode{connectErr: errors.New("connection refused"), checkErr: errors.New("broken")})
		c, err := p.ClaimFiltered(t.Context(), primaries)
		if err != nil {
			t.Fatal(err)
		}
		c.Discard(errors.New("connection reset"))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if c, err := p.ClaimFiltered(ctx, primaries); err == nil {
			t.Errorf("a primary claim got %s with no primary", c.Backend().Addr)
			c.Release()
		} else if !errors.Is(err, ErrClaimTimeout) {
			t.Errorf("primary claim with no primary: %v, want ErrClaimTimeout", err)
		}
		if lost, found := w.counts(); lost != 1 || found != 0 {
			t.Errorf("%d primary-lost and %d primary-found events with no primary, want 1 and 0", lost, found)
		}
		rc.setRole(bs[1].Addr, resolver.RolePrimary)
		c, err = p.ClaimFiltered(t.Context(), primaries)
		if err != nil || c.Backend().Addr != bs[1].Addr {
			t.Fatalf("primary claim after the promotion: %v, %v; want %s", c.Backend().Addr, err, bs[1].Addr)
		}
		c.Release()
	})
}

// A replica promoted (or a primary demoted) is judged by its new role
// from the moment the pool learns it, not from when the control loop
// rebuilds the picker: no replica claim gets the new primary.
func TestRoleChangeSeenByTheNextClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		replicas := func(b resolver.Backend) bool { return b.Role != resolver.RolePrimary }
		for i := range 20 {
			p, rc, _, bs, _ := failoverPool(t, Policy{})
			rc.setRole(bs[1].Addr, resolver.RolePrimary)
			p.SetRole(bs[1].Key(), resolver.RolePrimary)
			for range 4 {
				c, ok := p.TryClaimFiltered(t.Context(), replicas)
				if ok && c.Backend().Addr == bs[1].Addr {
					t.Errorf("round %d: a replica claim got %s just promoted", i, bs[1].Addr)
				}
				if ok {
					c.Release()
				}
			}
			p.Close()
		}
	})
}
