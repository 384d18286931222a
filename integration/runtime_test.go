package integration

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/pool"
)

// check stops the load and fails the test for every failed query; it
// returns the queries and the longest one.
func (l *readLoad) check(t *testing.T) (runs []timed, longest time.Duration) {
	t.Helper()
	l.stop()
	errs := 0
	for _, r := range l.reads {
		longest = max(longest, r.end.Sub(r.start))
		if r.err != nil {
			if errs < 5 {
				t.Errorf("query failed %v into the load: %v", r.start.Sub(l.reads[0].start), r.err)
			}
			errs++
		}
	}
	if errs > 0 || len(l.reads) == 0 {
		t.Errorf("%d of %d queries failed, want none of some", errs, len(l.reads))
	}
	return l.reads, longest
}

// sessions counts our sessions on all of c's servers.
func (c *cluster) sessions(t *testing.T) int {
	n := 0
	for _, s := range c.servers {
		n += s.Sessions(t, dbtest.User)
	}
	return n
}

// slotsOf counts the slots of st's backends.
func slotsOf(st pool.Stats) int {
	n := 0
	for _, b := range st.Backends {
		n += b.Slots()
	}
	return n
}

// setMaxConns changes the pool's MaxSlots through Connector.SetPolicy.
func setMaxConns(t *testing.T, qc *qorb.Connector, n int) {
	t.Helper()
	pol := qc.Policy()
	pol.MaxSlots = n
	if err := qc.SetPolicy(pol); err != nil {
		t.Fatalf("SetPolicy(MaxSlots %d): %v", n, err)
	}
}

// TestResizeUnderLoad moves pool_max_conns up and down under 64
// goroutines of queries: no query fails, the servers' session counts
// follow, and no count polled is ever above the cap in force: after a
// cut, they only fall to the new cap and then stay under it.
func TestResizeUnderLoad(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 2)
		db := c.open(t, url.Values{"pool_max_conns": {"4"}, "pool_max_conns_per_backend": {"16"}, "pool_claim_timeout": {"30s"}})
		qc, err := qorb.ConnectorOf(db)
		if err != nil {
			t.Fatal(err)
		}
		l := startReadLoad(t, db, c.e.portQuery, 64, 30*time.Second, qorb.RoleAny)
		polls := 0
		// hold polls the session count for d: it must stay at or under
		// limit.
		hold := func(d time.Duration, limit int) (most int) {
			t.Helper()
			for end := time.Now().Add(d); time.Now().Before(end); {
				n := c.sessions(t)
				polls++
				most = max(most, n)
				if n > limit {
					t.Errorf("%d sessions with the cap at %d", n, limit)
				}
				if st := qc.Stats(); slotsOf(st) > limit {
					t.Errorf("pool has %d slots with the cap at %d", slotsOf(st), limit)
				}
				time.Sleep(20 * time.Millisecond)
			}
			return most
		}
		// shrink polls until the count is at or under limit, never above
		// from (the cap before), and checks it falls.
		shrink := func(from, limit int) {
			t.Helper()
			prev := from
			deadline := time.Now().Add(20 * time.Second)
			for {
				n := c.sessions(t)
				polls++
				if n > prev {
					t.Errorf("sessions rose from %d to %d while the pool shrank to %d", prev, n, limit)
				}
				prev = n
				if n <= limit {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %d sessions 20s after the cap went to %d", n, limit)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Logf("cap 4: at most %d sessions", hold(time.Second, 4))
		setMaxConns(t, qc, 16)
		waitFor(t, 10*time.Second, "the pool grows past 4 sessions", func() bool { return c.sessions(t) > 4 })
		t.Logf("cap 16: at most %d sessions", hold(2*time.Second, 16))
		setMaxConns(t, qc, 3)
		shrink(16, 3)
		t.Logf("cap 3: at most %d sessions", hold(2*time.Second, 3))
		setMaxConns(t, qc, 10)
		waitFor(t, 10*time.Second, "the pool grows past 3 sessions", func() bool { return c.sessions(t) > 3 })
		t.Logf("cap 10: at most %d sessions", hold(2*time.Second, 10))
		runs, longest := l.check(t)
		t.Logf("%d queries, the longest %v; %d session counts polled", len(runs), longest, polls)
	})
}

// TestDrainUnderLoad drains one of two backends under 64 goroutines of
// queries: no query fails, Drain returns once the backend's sessions are
// gone, no query reaches it from then on, and after Undrain it serves
// again.
func TestDrainUnderLoad(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 2)
		db := c.open(t, url.Values{"pool_claim_timeout": {"30s"}})
		qc, err := qorb.ConnectorOf(db)
		if err != nil {
			t.Fatal(err)
		}
		gone := c.servers[0]
		addr := fmt.Sprintf("127.0.0.1:%d", gone.Port())
		l := startReadLoad(t, db, c.e.portQuery, 64, 30*time.Second, qorb.RoleAny)
		waitFor(t, 10*time.Second, "the backend to drain has sessions", func() bool { return gone.Sessions(t, dbtest.User) > 0 })

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		if err := qc.Drain(ctx, addr); err != nil {
			t.Fatalf("Drain: %v", err)
		}
		drained := time.Now()
		t.Logf("Drain took %v", drained.Sub(start))
		// Its sessions end once their connections are closed; the server
		// notices at once but may take a moment to forget them.
		waitFor(t, 5*time.Second, "the drained backend's sessions end", func() bool { return gone.Sessions(t, dbtest.User) == 0 })
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if n := gone.Sessions(t, dbtest.User); n != 0 {
				t.Errorf("%d sessions on the drained backend", n)
			}
		}
		for _, b := range qc.Stats().Backends {
			if b.Backend.Addr == addr && (!b.Drained || b.Slots() != 0) {
				t.Errorf("Stats: drained backend has Drained %v, %d slots", b.Drained, b.Slots())
			}
		}
		l.mu.Lock()
		for _, r := range l.reads {
			if r.err == nil && r.port == gone.Port() && r.start.After(drained) {
				t.Errorf("a query begun %v after Drain returned reached the drained backend", r.start.Sub(drained))
			}
		}
		l.mu.Unlock()

		if err := qc.Undrain(addr); err != nil {
			t.Fatalf("Undrain: %v", err)
		}
		undrained := time.Now()
		waitFor(t, 40*time.Second, "the undrained backend serves again", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, r := range l.reads {
				if r.err == nil && r.port == gone.Port() && r.start.After(undrained) {
					return true
				}
			}
			return false
		})
		runs, longest := l.check(t)
		t.Logf("%d queries, the longest %v", len(runs), longest)
	})
}

// TestPauseAcrossSwitchover moves a service from one server to another
// under 64 goroutines of queries, as a planned switchover does: Pause,
// the old server stops and DNS names the new one, Resume. No query fails,
// and none waits much longer than the pause.
func TestPauseAcrossSwitchover(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 2)
		old, next := c.servers[0], c.servers[1]
		c.publish(old)
		db := c.open(t, url.Values{"pool_claim_timeout": {"30s"}})
		qc, err := qorb.ConnectorOf(db)
		if err != nil {
			t.Fatal(err)
		}
		l := startReadLoad(t, db, c.e.portQuery, 64, 30*time.Second, qorb.RoleAny)
		time.Sleep(500 * time.Millisecond) // the load runs on the old server

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		pausedAt := time.Now()
		if err := qc.Pause(ctx); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		if !qc.Stats().Paused {
			t.Error("Stats().Paused is false after Pause")
		}
		old.Kill(t)
		c.publish(next)
		waitFor(t, 20*time.Second, "the pool has connections to the new server only", func() bool {
			st := qc.Stats()
			for _, b := range st.Backends {
				if b.Backend.Addr == fmt.Sprintf("127.0.0.1:%d", old.Port()) {
					return false
				}
			}
			return len(st.Backends) == 1 && st.Backends[0].Idle > 0
		})
		paused := time.Since(pausedAt)
		qc.Resume()
		resumedAt := time.Now()
		time.Sleep(time.Second) // the load runs on the new server
		runs, longest := l.check(t)
		served := 0
		for _, r := range runs {
			if r.err == nil && r.start.After(resumedAt) {
				served++
				if r.port != next.Port() {
					t.Errorf("a query after Resume reached port %d, not the new server's %d", r.port, next.Port())
				}
			}
		}
		if served == 0 {
			t.Error("no query served after Resume")
		}
		if longest > paused+5*time.Second {
			t.Errorf("the longest query took %v, the pause %v", longest, paused)
		}
		t.Logf("paused %v; %d queries, the longest %v", paused, len(runs), longest)
	})
}
