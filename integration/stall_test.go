package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
)

// readLoad runs reads of the engine's port query with one role from n
// goroutines until stop is called, each bounded by perRead, and records
// every read.
type readLoad struct {
	mu    sync.Mutex
	reads []timed
	stop  func()
}

func startReadLoad(t testing.TB, db *sql.DB, query string, n int, perRead time.Duration, role qorb.Role) *readLoad {
	return startPortLoad(t, sqlPort(db, query), n, perRead, role)
}

// startPortLoad is startReadLoad through port, a query through either of
// qorb's faces.
func startPortLoad(t testing.TB, port portFunc, n int, perRead time.Duration, role qorb.Role) *readLoad {
	l := &readLoad{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(qorb.WithRole(context.Background(), role), perRead)
				p, err := port(ctx)
				cancel()
				l.mu.Lock()
				l.reads = append(l.reads, timed{start, time.Now(), p, err})
				l.mu.Unlock()
			}
		})
	}
	var once sync.Once
	l.stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(l.stop) // before the database closes
	return l
}

// servedSince counts the successful reads begun at or after from, by port.
func (l *readLoad) servedSince(from time.Time) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for _, r := range l.reads {
		if r.err == nil && !r.start.Before(from) {
			out[r.port]++
		}
	}
	return out
}

// testHungReplica freezes a replica (SIGSTOP) under 32 goroutines of
// replica reads, with qorb's default settings: the reads in flight on it
// are cut once it stops answering its probes (pool_suspect_after +
// pool_stall_timeout, 2 s) and run again on the other replica, so no read
// fails and none waits much past that; reads begun later go to the other
// replica until the frozen one resumes, and then reach it again.
func testHungReplica(t *testing.T, rc *replCluster) {
	db, _ := rc.openWith(t, nil, nil)
	// A sql.Conn pinned to the replica about to freeze.
	pin := func(hung int) (func(context.Context) error, func()) {
		c := pinTo(t, db, hung, rc.e.portQuery)
		exec := func(ctx context.Context) error {
			_, err := c.ExecContext(ctx, "SELECT 1")
			return err
		}
		return exec, func() { c.Close() }
	}
	frozenReplica(t, rc, sqlPort(db, rc.e.portQuery), pin)
}

// frozenReplica is testHungReplica through port; pin returns a statement
// on a connection pinned to the replica on port hung, and what releases
// the connection.
func frozenReplica(t *testing.T, rc *replCluster, port portFunc, pin func(hung int) (exec func(context.Context) error, release func())) {
	hung, other := rc.replicas()[1], rc.replicas()[0]
	l := startPortLoad(t, port, 32, 10*time.Second, qorb.RoleReplica)
	start := time.Now()
	eventually(t, 10*time.Second, "the load reaches both replicas", func() (bool, string) {
		served := l.servedSince(start)
		return served[hung.Port()] > 0 && served[other.Port()] > 0, fmt.Sprint(served)
	})

	// What runs on the pinned connection is not repeated, so it fails,
	// promptly and saying why.
	exec, release := pin(hung.Port())
	pinnedErr := make(chan error, 1)
	var pinnedTook time.Duration

	pausedAt := time.Now()
	hung.Pause(t)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := exec(ctx)
		pinnedTook = time.Since(pausedAt)
		pinnedErr <- err
	}()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			hung.Resume(t)
		}
	})
	time.Sleep(5 * time.Second) // the load runs on against the frozen replica
	resumedAt := time.Now()
	hung.Resume(t)
	resumed = true
	eventually(t, 20*time.Second, fmt.Sprintf("reads reach resumed replica %d again", hung.Port()), func() (bool, string) {
		served := l.servedSince(resumedAt)
		return served[hung.Port()] > 0, fmt.Sprint(served)
	})
	l.stop()
	if err := <-pinnedErr; !errors.Is(err, qorb.ErrStalled) {
		t.Errorf("statement on a connection pinned to the frozen replica: %v, want an error wrapping qorb.ErrStalled", err)
	} else if pinnedTook > 3500*time.Millisecond {
		t.Errorf("statement on a connection pinned to the frozen replica failed after %v, want within 3.5 s", pinnedTook)
	} else {
		t.Logf("statement on a connection pinned to the frozen replica failed after %v: %v", pinnedTook.Round(time.Millisecond), err)
	}
	release()

	checkFrozenReads(t, l.reads, pausedAt, resumedAt, hung.Port(), rc.primary().Port())
}

// checkFrozenReads checks the replica reads of a load during which the
// replica on port hung was frozen from pausedAt to resumedAt: none failed,
// none begun before it was found took much longer than cutting it takes,
// none reached the primary, and none begun after it was found reached it
// while frozen.
func checkFrozenReads(t *testing.T, reads []timed, pausedAt, resumedAt time.Time, hung, primary int) {
	t.Helper()
	const cutBy = 2 * time.Second            // pool_suspect_after + pool_stall_timeout
	const patience = 3500 * time.Millisecond // cutBy, the read again, a busy machine
	var errs, late, onHung int
	var longest time.Duration
	for _, r := range reads {
		d := r.end.Sub(r.start)
		if r.end.After(pausedAt) {
			longest = max(longest, d)
		}
		switch {
		case r.err != nil:
			errs++
			if errs <= 5 {
				t.Errorf("replica read begun %v after the freeze failed: %v", r.start.Sub(pausedAt), r.err)
			}
		case d > patience && r.start.Before(pausedAt.Add(cutBy+time.Second)):
			// A read begun later was served by the other replica (see
			// onHung): how long it took is the machine's load.
			late++
			if late <= 5 {
				t.Errorf("replica read begun %v after the freeze took %v on %d (frozen: %d), want at most %v", r.start.Sub(pausedAt), d, r.port, hung, patience)
			}
		case r.port == primary:
			t.Errorf("a replica read reached the primary")
		case r.port == hung && r.start.After(pausedAt.Add(cutBy+time.Second)) && r.start.Before(resumedAt):
			onHung++
		}
	}
	t.Logf("%d replica reads; the longest in flight during the freeze took %v", len(reads), longest.Round(time.Millisecond))
	if errs > 0 {
		t.Errorf("%d replica reads failed, want none", errs)
	}
	if late > 0 {
		t.Errorf("%d replica reads took longer than %v", late, patience)
	}
	if onHung > 0 {
		t.Errorf("%d replica reads begun after the frozen replica was found were served by it while frozen", onHung)
	}
}

// pinTo returns a sql.Conn of db whose backend has port port (asked with
// query), holding a replica-role claim until it is closed.
func pinTo(t *testing.T, db *sql.DB, port int, query string) *sql.Conn {
	t.Helper()
	ctx := qorb.WithRole(t.Context(), qorb.RoleReplica)
	var others []*sql.Conn
	defer func() {
		for _, c := range others {
			c.Close()
		}
	}()
	for range 20 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var p int
		if err := c.QueryRowContext(ctx, query).Scan(&p); err != nil {
			t.Fatal(err)
		}
		if p == port {
			return c
		}
		others = append(others, c)
	}
	t.Fatalf("no connection to %d in 20 tries", port)
	return nil
}

// testLongQuery: queries of 10 s on healthy backends, with every
// connection of the pool busy with one (so probes need connections of
// their own), are never cut, with qorb's default stall settings.
func testLongQuery(t *testing.T, rc *replCluster) {
	db, c := rc.openWith(t, url.Values{"pool_max_conns_per_backend": {"1"}, "pool_max_conns": {"3"}}, nil)
	all := append([]replServer{rc.primary()}, rc.replicas()...)
	var wg sync.WaitGroup
	for range all {
		wg.Go(func() {
			start := time.Now()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err := db.ExecContext(ctx, rc.sleepQuery)
			if err != nil {
				t.Errorf("%s after %v: %v", rc.sleepQuery, time.Since(start).Round(time.Millisecond), err)
			} else if d := time.Since(start); d < 10*time.Second {
				t.Errorf("%s returned after %v", rc.sleepQuery, d)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The probes waited for room under pool_max_conns, and took it from
	// the first connections to come back, which the pool reopens at once:
	// it has a connection to each backend again.
	waitFor(t, 10*time.Second, "a connection to each backend", func() bool {
		for _, b := range c.Stats().Backends {
			if b.Idle == 0 {
				return false
			}
		}
		return true
	})
	counts := readPorts(qorb.WithRole(t.Context(), qorb.RoleAny), t, db, rc.e.portQuery, 30, 3)
	want := make([]int, len(all))
	for i, s := range all {
		want[i] = s.Port()
	}
	slices.Sort(want)
	checkServed(t, "30 reads after the long queries", counts, want, false)
}
