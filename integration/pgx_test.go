package integration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/pgdialect/qorbpgx"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// The native pgx face (qorbpgx) in the driver's scenarios: the same
// clusters, DSNs and expectations as through database/sql.

const pgPortQuery = "SELECT inet_server_port()"

func postgresEngine(t *testing.T) engine {
	t.Helper()
	for _, e := range engines {
		if e.name == "postgres" {
			return e
		}
	}
	t.Fatal("no postgres engine")
	return engine{}
}

// openPgx starts a native pool for dsn, closed when the test ends.
func openPgx(t testing.TB, dsn string) *qorbpgx.Pool {
	t.Helper()
	p, err := qorbpgx.New(t.Context(), dsn)
	if err != nil {
		t.Fatalf("qorbpgx.New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// pgxPort returns the port of the backend that served a query through p.
func pgxPort(ctx context.Context, p *qorbpgx.Pool) (int, error) {
	var port int
	err := p.QueryRow(ctx, pgPortQuery).Scan(&port)
	return port, err
}

// pgxPorts is pgxPort as a portFunc.
func pgxPorts(p *qorbpgx.Pool) portFunc {
	return func(ctx context.Context) (int, error) { return pgxPort(ctx, p) }
}

// pgxReadPorts is readPorts through p.
func pgxReadPorts(ctx context.Context, t testing.TB, p *qorbpgx.Pool, n, workers int) map[int]int {
	t.Helper()
	return countPorts(ctx, t, pgxPorts(p), n, workers)
}

// TestPgxSpread is TestSpread through the native pool.
func TestPgxSpread(t *testing.T) {
	c := startCluster(t, postgresEngine(t), 3)
	testSpread(t, c, pgxPorts(openPgx(t, c.dsn(spreadPolicy))))
}

// TestPgxBackendKilledUnderLoad is TestBackendKilledUnderLoad through the
// native pool.
func TestPgxBackendKilledUnderLoad(t *testing.T) {
	c := startCluster(t, postgresEngine(t), 3)
	testKilledUnderLoad(t, c, pgxPorts(openPgx(t, c.dsn(nil))))
}

// TestPgxHungBackendAvoided is TestHungBackendAvoided through the native
// pool.
func TestPgxHungBackendAvoided(t *testing.T) {
	c := startCluster(t, postgresEngine(t), 3)
	p := openPgx(t, c.dsn(nil))
	testHungBackend(t, c, pgxPorts(p), p.Stats)
}

// TestPgxCloseLeavesNothing: once Close returns, after queries,
// transactions, batches and acquired connections, no session of ours is
// left on any server (soon) and no goroutine of ours is left.
func TestPgxCloseLeavesNothing(t *testing.T) {
	c := startCluster(t, postgresEngine(t), 3)
	base := runtime.NumGoroutine()
	p, err := qorbpgx.New(t.Context(), c.dsn(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 30 {
				if _, err := pgxPort(ctx, p); err != nil {
					t.Error(err)
					return
				}
				err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "SELECT 1")
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				b := &pgx.Batch{}
				b.Queue("SELECT 1")
				if err := p.SendBatch(ctx, b).Close(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	held, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	for _, s := range c.servers {
		open += s.Sessions(t, dbtest.User)
	}
	if open == 0 {
		t.Fatal("no sessions open before Close: the test would prove nothing")
	}
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a connection was acquired")
	case <-time.After(100 * time.Millisecond):
	}
	held.Release()
	<-closed
	if _, err := pgxPort(ctx, p); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("query after Close: %v, want pool.ErrClosed", err)
	}
	for _, s := range c.servers {
		waitFor(t, 5*time.Second, fmt.Sprintf("backend %d has no sessions left", s.Port()), func() bool {
			return s.Sessions(t, dbtest.User) == 0
		})
	}
	if n := settledGoroutines(base, 5*time.Second); n > base {
		t.Errorf("%d goroutines after Close, %d before New", n, base)
	}
}

// openPgxRepl starts a native pool over rc's servers and waits until it
// knows every backend's role.
func openPgxRepl(t *testing.T, rc *replCluster, policy, extra url.Values) *qorbpgx.Pool {
	t.Helper()
	want := map[int]resolver.Role{rc.primary().Port(): resolver.RolePrimary}
	ps := []int{rc.primary().Port()}
	for _, r := range rc.replicas() {
		want[r.Port()] = resolver.RoleReplica
		ps = append(ps, r.Port())
	}
	p := openPgx(t, rc.dsnWith(ps, policy, extra))
	waitRoles(t, p.Connector(), 10*time.Second, want)
	return p
}

// pgxWrite inserts a new row through p and returns its id and the port of
// the server that wrote it.
func pgxWrite(ctx context.Context, rc *replCluster, p *qorbpgx.Pool) (id int64, port int, err error) {
	id = rc.nextID()
	err = p.QueryRow(ctx, rc.insertQuery, id, rowValue(id)).Scan(&port)
	return id, port, err
}

// TestPgxReplication runs the routing scenarios on a PostgreSQL primary
// with two standbys through the native face; failover comes last.
func TestPgxReplication(t *testing.T) {
	rc := startReplCluster(t, postgresEngine(t))
	t.Run("Routing", func(t *testing.T) { testPgxRouting(t, rc) })
	t.Run("LagLimit", func(t *testing.T) { testPgxLagLimit(t, rc) })
	t.Run("ReadYourWrites", func(t *testing.T) { testPgxReadYourWrites(t, rc) })
	t.Run("HungReplica", func(t *testing.T) { testPgxHungReplica(t, rc) })
	t.Run("Failover", func(t *testing.T) { testPgxFailover(t, rc) })
}

// testPgxRouting: replica reads spread over the replicas and never reach
// the primary; writes by the default role (read-write), with RolePrimary
// and in transactions all reach the primary; an acquired connection and
// a transaction keep their backend.
func testPgxRouting(t *testing.T, rc *replCluster) {
	p := openPgxRepl(t, rc, testPolicy, url.Values{"target_session_attrs": {"read-write"}})
	primary, replicas := rc.primary().Port(), ports(rc.replicas()...)
	replicaCtx := qorb.WithRole(t.Context(), qorb.RoleReplica)
	checkServed(t, "1000 replica reads, one at a time", pgxReadPorts(replicaCtx, t, p, 1000, 1), replicas, true)
	checkServed(t, "1000 replica reads from 8 goroutines", pgxReadPorts(replicaCtx, t, p, 1000, 8), replicas, true)
	checkServed(t, "200 prefer-replica reads",
		pgxReadPorts(qorb.WithRole(t.Context(), qorb.RolePreferReplica), t, p, 200, 1), replicas, false)
	checkServed(t, "200 reads by the default role", pgxReadPorts(t.Context(), t, p, 200, 4), []int{primary}, false)

	counts := map[int]int{}
	for i := range 100 {
		_, port, err := pgxWrite(t.Context(), rc, p)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		counts[port]++
		tx, err := p.Begin(qorb.WithRole(t.Context(), qorb.RolePrimary))
		if err != nil {
			t.Fatal(err)
		}
		id := rc.nextID()
		if _, err := tx.Exec(t.Context(), rc.insertQuery, id, rowValue(id)); err != nil {
			t.Fatalf("write %d in a transaction: %v", i, err)
		}
		if err := tx.QueryRow(t.Context(), pgPortQuery).Scan(&port); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		counts[port]++
	}
	checkServed(t, "200 writes", counts, []int{primary}, false)

	c, err := p.Acquire(replicaCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	first := 0
	for i := range 50 {
		var port int
		if err := c.QueryRow(t.Context(), pgPortQuery).Scan(&port); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = port
		} else if port != first {
			t.Fatalf("query %d on an acquired connection ran on %d, the first on %d", i, port, first)
		}
	}
	if c.Backend().Role != resolver.RoleReplica {
		t.Errorf("a connection acquired for a replica read is to a %v", c.Backend().Role)
	}
}

// testPgxLagLimit is testLagLimit through the native pool.
func testPgxLagLimit(t *testing.T, rc *replCluster) {
	lagLimit(t, rc, pgxPorts(openPgxRepl(t, rc, testPolicy, lagPolicy)))
}

// testPgxReadYourWrites is testReadYourWrites through the native pool.
func testPgxReadYourWrites(t *testing.T, rc *replCluster) {
	p := openPgxRepl(t, rc, testPolicy, nil)
	readYourWrites(t, rc, rwFace{
		write: func(ctx context.Context) (int64, int, error) { return pgxWrite(ctx, rc, p) },
		token: p.WriteToken,
		read: func(ctx context.Context, id int64) (port int, seen bool, err error) {
			var v *string
			err = p.QueryRow(ctx, rc.readQuery, id).Scan(&port, &v)
			if err == nil && v != nil && *v != rowValue(id) {
				err = fmt.Errorf("row %d reads %q, want %q", id, *v, rowValue(id))
			}
			return port, v != nil, err
		},
	})
}

// testPgxHungReplica is testHungReplica through the native pool, with a
// connection acquired on the replica that freezes.
func testPgxHungReplica(t *testing.T, rc *replCluster) {
	p := openPgxRepl(t, rc, nil, nil)
	// A connection acquired on the replica about to freeze.
	pin := func(hung int) (func(context.Context) error, func()) {
		var pinned *qorbpgx.Conn
		eventually(t, 10*time.Second, "a connection acquired on the replica about to freeze", func() (bool, string) {
			c, err := p.Acquire(qorb.WithRole(t.Context(), qorb.RoleReplica))
			if err != nil {
				return false, err.Error()
			}
			addr := c.Backend().Addr
			if addr == fmt.Sprintf("127.0.0.1:%d", hung) {
				pinned = c
				return true, ""
			}
			c.Release()
			return false, addr
		})
		exec := func(ctx context.Context) error {
			_, err := pinned.Exec(ctx, "SELECT 1")
			return err
		}
		return exec, pinned.Release
	}
	frozenReplica(t, rc, pgxPorts(p), pin)
}

// testPgxFailover stops the primary and promotes the first replica while
// 16 goroutines read with the replica role and 4 write by the default
// role (read-write), with qorb's default settings: no replica read fails
// or reaches the old primary, writes reach the new primary within 2 s of
// its promotion, and none begun later fails.
func testPgxFailover(t *testing.T, rc *replCluster) {
	p := openPgxRepl(t, rc, nil, url.Values{"target_session_attrs": {"read-write"}})
	oldPrimary, to := rc.primary().Port(), rc.replicas()[0]
	watcher := rc.direct(t, to)
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var (
		mu            sync.Mutex
		reads, writes []timed
		wg            sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for !stopped() {
				start := time.Now()
				ctx, cancel := context.WithTimeout(qorb.WithRole(context.Background(), qorb.RoleReplica), 5*time.Second)
				port, err := pgxPort(ctx, p)
				cancel()
				mu.Lock()
				reads = append(reads, timed{start, time.Now(), port, err})
				mu.Unlock()
			}
		})
	}
	wroteToNew := make(chan struct{})
	var once sync.Once
	for range 4 {
		wg.Go(func() {
			for !stopped() {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, port, err := pgxWrite(ctx, rc, p)
				cancel()
				mu.Lock()
				writes = append(writes, timed{start, time.Now(), port, err})
				mu.Unlock()
				if err == nil && port == to.Port() {
					once.Do(func() { close(wroteToNew) })
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	time.Sleep(500 * time.Millisecond) // the load runs
	failoverAt := time.Now()
	rc.failover(t, to)
	var promotedAt time.Time
	eventually(t, 10*time.Second, "the new primary takes writes", func() (bool, string) {
		var promoted bool
		err := watcher.QueryRowContext(t.Context(), rc.promotedQuery).Scan(&promoted)
		promotedAt = time.Now()
		return err == nil && promoted, fmt.Sprint(err)
	})
	select {
	case <-wroteToNew:
	case <-time.After(10 * time.Second):
		t.Fatalf("no write reached the new primary %d within 10 s of the failover", to.Port())
	}
	firstAt := time.Now()
	time.Sleep(time.Second) // the load runs on
	stopLoad()
	t.Logf("failover began; promoted after %v; first write there within %v of the promotion",
		promotedAt.Sub(failoverAt).Round(time.Millisecond), firstAt.Sub(promotedAt).Round(time.Millisecond))
	if d := firstAt.Sub(promotedAt); d > 2*time.Second+200*time.Millisecond {
		t.Errorf("writes reached the new primary %v after its promotion, want within 2 s", d)
	}
	for _, w := range writes {
		switch {
		case w.err != nil && w.start.After(firstAt):
			t.Errorf("write begun %v after one reached the new primary failed: %v", w.start.Sub(firstAt), w.err)
		case w.err == nil && w.port == oldPrimary && w.end.After(promotedAt):
			t.Errorf("a write was acknowledged by the old primary after the promotion")
		}
	}
	errs := 0
	for _, r := range reads {
		switch {
		case r.err != nil:
			errs++
			if errs <= 5 {
				t.Errorf("replica read %v after the failover began failed: %v", r.end.Sub(failoverAt), r.err)
			}
		case r.port == oldPrimary:
			t.Errorf("a replica read reached the old primary")
		}
	}
	t.Logf("%d replica reads, %d writes", len(reads), len(writes))
}
