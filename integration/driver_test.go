package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/mysqldialect"
	"github.com/qorb-go/qorb/dialects/pgdialect"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/pool"
)

// forEngine runs f as a subtest for each engine.
func forEngine(t *testing.T, f func(t *testing.T, e engine)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { f(t, e) })
	}
}

// TestSpread: over 3,000 queries each backend serves within 10% of a
// third, one goroutine after another and 64 at once.
func TestSpread(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 3)
		// A pool sized for 64 queries at once, with room for a backend
		// twice as slow as the others to carry twice their claims: with
		// fewer connections than that, claims queue, and each backend
		// serves in proportion to its speed.
		db := c.open(t, spreadPolicy)
		testSpread(t, c, sqlPort(db, e.portQuery))
	})
}

// spreadPolicy is TestSpread's pool: see there.
var spreadPolicy = url.Values{"pool_max_conns": {"192"}, "pool_max_conns_per_backend": {"64"}, "pool_spares": {"64"}}

// testSpread is TestSpread through port.
func testSpread(t *testing.T, c *cluster, port portFunc) {
	check := func(what string, counts map[int]int, total int) {
		t.Helper()
		t.Logf("%s: %v", what, counts)
		for _, s := range c.servers {
			n := counts[s.Port()]
			if n < total/3*9/10 || n > total/3*11/10 {
				t.Errorf("%s: backend %d served %d of %d queries, want %d±10%%", what, s.Port(), n, total, total/3)
			}
		}
	}
	ctx := t.Context()
	counts := map[int]int{}
	for range 3000 {
		p, err := port(ctx)
		if err != nil {
			t.Fatal(err)
		}
		counts[p]++
	}
	check("sequential", counts, 3000)

	// Warm the pool to its size for 64 goroutines first.
	run := func(total int, counts map[int]int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range total / 64 {
					p, err := port(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					if counts != nil {
						mu.Lock()
						counts[p]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	run(1280, nil)
	counts = map[int]int{}
	run(9600, counts)
	check("64 goroutines", counts, 9600)
}

// result is one query of a load run.
type result struct {
	at   time.Time
	port int
	err  error
}

// load runs queries from n goroutines until stop is closed, each bounded
// by perQuery, and returns every result.
func load(port portFunc, n int, perQuery time.Duration, stop <-chan struct{}) []result {
	var (
		mu  sync.Mutex
		out []result
		wg  sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), perQuery)
				p, err := port(ctx)
				cancel()
				mu.Lock()
				out = append(out, result{at: time.Now(), port: p, err: err})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// TestBackendKilledUnderLoad kills one backend's server in the middle of a
// 64-goroutine read load: reads keep flowing on the others within a
// second, the only errors are statements that were in flight on the dead
// backend, and the backend gets traffic again once it is back.
func TestBackendKilledUnderLoad(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 3)
		db := c.open(t, nil)
		testKilledUnderLoad(t, c, sqlPort(db, e.portQuery))
	})
}

// testKilledUnderLoad is TestBackendKilledUnderLoad through port.
func testKilledUnderLoad(t *testing.T, c *cluster, port portFunc) {
	victim := c.servers[1]
	for _, s := range c.servers { // warm every backend
		waitFor(t, 10*time.Second, "every backend serves", func() bool {
			p, err := port(t.Context())
			return err == nil && p == s.Port()
		})
	}

	stop := make(chan struct{})
	var results []result
	done := make(chan struct{})
	go func() {
		results = load(port, 64, 5*time.Second, stop)
		close(done)
	}()
	time.Sleep(500 * time.Millisecond) // load is running
	killedAt := time.Now()
	victim.Kill(t)
	time.Sleep(2 * time.Second)
	close(stop)
	<-done

	var errs, before, after, lateErrs int
	for _, r := range results {
		switch {
		case r.err != nil:
			errs++
			if r.at.After(killedAt.Add(time.Second)) {
				lateErrs++
				t.Logf("error %v after the kill: %v", r.at.Sub(killedAt), r.err)
			}
		case r.at.Before(killedAt):
			before++
		case r.at.After(killedAt.Add(time.Second)):
			after++
			if r.port == victim.Port() {
				t.Errorf("a query reached the killed backend %v after the kill", r.at.Sub(killedAt))
			}
		}
	}
	t.Logf("%d queries before the kill, %d more than a second after it, %d errors", before, after, errs)
	if lateErrs > 0 {
		t.Errorf("%d errors more than a second after the kill, want none", lateErrs)
	}
	// At most one statement per connection to the victim was in flight.
	if errs > 12 {
		t.Errorf("%d errors, more than the killed backend's 12 connections could have had in flight", errs)
	}
	if after == 0 {
		t.Error("no query succeeded more than a second after the kill")
	}

	// Recovery: the server comes back and gets traffic again, after the
	// pool's jittered backoff (5 to 10 s seen on a loaded machine).
	victim.Start(t)
	waitFor(t, 20*time.Second, "the restarted backend serves queries again", func() bool {
		for range 30 {
			p, err := port(t.Context())
			if err == nil && p == victim.Port() {
				return true
			}
		}
		return false
	})
}

// TestHungBackendAvoided stops one backend's server (SIGSTOP) after the
// pool has connections to it: the health check finds it, queries stop
// going there, and it gets traffic again once it resumes.
func TestHungBackendAvoided(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 3)
		conn, err := qorb.OpenConnector(c.dsn(nil))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(conn)
		t.Cleanup(func() { db.Close() })
		testHungBackend(t, c, sqlPort(db, e.portQuery), conn.Stats)
	})
}

// testHungBackend is TestHungBackendAvoided through port, with stats the
// pool's.
func testHungBackend(t *testing.T, c *cluster, port portFunc, stats func() pool.Stats) {
	hung := c.servers[2]
	reachesBoth(t, port, c.servers[0].Port(), hung.Port())

	hung.Pause(t)
	// The health check (every 300ms, 300ms timeout) finds the hung
	// server's connections dead and cannot open new ones.
	waitFor(t, 10*time.Second, "the pool stops holding connections to the hung backend", func() bool {
		for _, b := range stats().Backends {
			if b.Backend.Addr == fmt.Sprintf("127.0.0.1:%d", hung.Port()) {
				return b.Idle == 0 && b.Health != pool.HealthOnline
			}
		}
		return false
	})
	for range 300 {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		p, err := port(ctx)
		cancel()
		if err != nil {
			t.Fatalf("query after the hung backend was found: %v", err)
		}
		if p == hung.Port() {
			t.Fatal("a query reached the hung backend after it was found")
		}
	}

	hung.Resume(t)
	reachesBoth(t, port, c.servers[0].Port(), hung.Port())
}

// TestRemovedFromDNSDrained removes a backend from DNS: it gets no more
// queries and its sessions close.
func TestRemovedFromDNSDrained(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 3)
		db := c.open(t, nil)
		gone := c.servers[0]
		waitFor(t, 10*time.Second, "the backend to be removed has sessions", func() bool {
			_, _ = c.port(t.Context(), db)
			return gone.Sessions(t, dbtest.User) > 0
		})
		c.publish(c.servers[1:]...)
		waitFor(t, 10*time.Second, "the removed backend's sessions close", func() bool {
			for range 20 {
				if _, err := c.port(t.Context(), db); err != nil {
					t.Fatal(err)
				}
			}
			return gone.Sessions(t, dbtest.User) == 0
		})
		for range 300 {
			p, err := c.port(t.Context(), db)
			if err != nil {
				t.Fatal(err)
			}
			if p == gone.Port() {
				t.Fatal("a query reached the backend removed from DNS")
			}
		}
	})
}

// TestCloseLeavesNothing: after db.Close no session of ours is left on any
// server and no goroutine of ours is left.
func TestCloseLeavesNothing(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 3)
		base := runtime.NumGoroutine()
		db, err := sql.Open("qorb", c.dsn(nil))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 50 {
					if _, err := c.port(t.Context(), db); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		stmt, err := db.Prepare(e.portQuery)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			var p int
			if err := stmt.QueryRow().Scan(&p); err != nil {
				t.Fatal(err)
			}
		}
		stmt.Close()
		open := 0
		for _, s := range c.servers {
			open += s.Sessions(t, dbtest.User)
		}
		if open == 0 {
			t.Fatal("no sessions open before Close: the test would prove nothing")
		}
		if err := db.Close(); err != nil {
			t.Errorf("db.Close: %v", err)
		}
		for _, s := range c.servers {
			waitFor(t, 5*time.Second, fmt.Sprintf("backend %d has no sessions left", s.Port()), func() bool {
				return s.Sessions(t, dbtest.User) == 0
			})
		}
		if n := settledGoroutines(base, 5*time.Second); n > base {
			t.Errorf("%d goroutines after db.Close, %d before sql.Open", n, base)
		}
	})
}

// TestDriverDSNs: the drivers' own DSN strings work through the dialects'
// NewConnector, with the hosts in them as the backend list.
func TestDriverDSNs(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		pgs := dbtest.StartPostgres(t, 2)
		for _, dsn := range []string{
			fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=%s password=%s dbname=%s sslmode=disable pool_max_conns=4",
				pgs[0].Port(), pgs[1].Port(), dbtest.User, dbtest.Password, dbtest.Database),
			fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable",
				dbtest.User, dbtest.Password, pgs[0].Port(), pgs[1].Port(), dbtest.Database),
		} {
			c, err := pgdialect.NewConnector(dsn)
			if err != nil {
				t.Fatalf("NewConnector: %v", err)
			}
			db := sql.OpenDB(c)
			reachesBoth(t, sqlPort(db, "SELECT inet_server_port()"), pgs[0].Port(), pgs[1].Port())
			db.Close()
		}
	})
	t.Run("mariadb", func(t *testing.T) {
		ms := dbtest.StartMariaDB(t, 2)
		dsn := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d,127.0.0.1:%d)/%s?parseTime=true&pool_max_conns=4",
			dbtest.User, dbtest.Password, ms[0].Port(), ms[1].Port(), dbtest.Database)
		c, err := mysqldialect.NewConnector(dsn)
		if err != nil {
			t.Fatalf("NewConnector: %v", err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		reachesBoth(t, sqlPort(db, "SELECT @@port"), ms[0].Port(), ms[1].Port())
	})
}

// reachesBoth checks that queries through db reach both ports (the second
// backend may still be connecting when the first queries run).
func reachesBoth(t *testing.T, port portFunc, a, b int) {
	t.Helper()
	seen := map[int]bool{}
	waitFor(t, 10*time.Second, fmt.Sprintf("queries reach both %d and %d", a, b), func() bool {
		p, err := port(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		seen[p] = true
		return seen[a] && seen[b]
	})
}

// TestNoBackendAnswers: with every backend down, a query fails with a
// claim error that names the backends, not with a driver error or a hang.
func TestNoBackendAnswers(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		c := startCluster(t, e, 2)
		for _, s := range c.servers {
			s.Kill(t)
		}
		db := c.open(t, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := c.port(ctx, db)
		if err == nil {
			t.Fatal("query with every backend down succeeded")
		}
		if !errors.Is(err, pool.ErrNoBackendsOnline) && !errors.Is(err, pool.ErrClaimTimeout) {
			t.Errorf("error %v is neither ErrNoBackendsOnline nor ErrClaimTimeout", err)
		}
		for _, s := range c.servers {
			if want := fmt.Sprint(s.Port()); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name backend port %s", err, want)
			}
		}
	})
}
