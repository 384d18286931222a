package hastack

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/pgdialect" // the postgres:// and postgres+srv:// DSNs
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/internal/dnstest"
)

// SRVName is the name under which a [Stack] publishes the nodes:
// _postgresql._tcp.patroni.test.
const SRVName = "patroni.test"

// Stack is a Patroni cluster of three nodes, HAProxy in front of it, a DNS
// server that publishes the nodes, and the three systems that reach it: qorb
// with a static list ("qorb static"), qorb through SRV records ("qorb SRV")
// and HAProxy ("HAProxy"). qorb runs with its default settings, plus
// Params. Everything is torn down when the test that started it ends.
type Stack struct {
	Cluster *dbtest.PatroniCluster
	HAProxy *dbtest.HAProxy
	DNS     *dnstest.Server
	Systems []*System

	ids atomic.Int64
}

// StartStack starts the stack. params are extra DSN parameters for both
// qorb systems (none for the default settings).
func StartStack(t testing.TB, params url.Values) *Stack {
	t.Helper()
	s := &Stack{Cluster: dbtest.StartPatroniCluster(t, 3)}
	s.HAProxy = dbtest.StartHAProxy(t, s.Cluster)
	s.DNS = dnstest.NewServer(t)
	var recs []dnstest.SRV
	for _, nd := range s.Cluster.Nodes {
		host := nd.Name() + "." + SRVName
		s.DNS.SetA(host, 60, "127.0.0.1")
		recs = append(recs, dnstest.SRV{Weight: 1, Port: uint16(nd.Port()), Target: host, TTL: 5})
	}
	s.DNS.SetSRV("_postgresql._tcp."+SRVName, recs...)

	leader := s.Cluster.WaitHealthy(t)
	direct := openDB(t, "pgx", leader.DSN())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := direct.ExecContext(ctx, createTable); err != nil {
		t.Fatalf("%s: %v", createTable, err)
	}

	q := url.Values{"sslmode": {"disable"}}
	for k, v := range params {
		q[k] = v
	}
	hosts := make([]string, 0, len(s.Cluster.Nodes))
	for _, nd := range s.Cluster.Nodes {
		hosts = append(hosts, nd.Addr())
	}
	static := openDB(t, "qorb", fmt.Sprintf("postgres://%s:%s@%s/%s?%s",
		dbtest.User, dbtest.Password, strings.Join(hosts, ","), dbtest.Database, q.Encode()))
	q.Set("dns_server", s.DNS.Addr())
	srv := openDB(t, "qorb", fmt.Sprintf("postgres+srv://%s:%s@%s/%s?%s",
		dbtest.User, dbtest.Password, SRVName, dbtest.Database, q.Encode()))
	replica := func(ctx context.Context) context.Context { return qorb.WithRole(ctx, qorb.RoleReplica) }
	primary := func(ctx context.Context) context.Context { return qorb.WithRole(ctx, qorb.RolePrimary) }
	plain := func(ctx context.Context) context.Context { return ctx }
	hr := openDB(t, "pgx", s.HAProxy.ReplicaDSN())
	hw := openDB(t, "pgx", s.HAProxy.PrimaryDSN())
	// database/sql keeps 2 idle connections by default; an application
	// with this many goroutines keeps one per goroutine.
	hr.SetMaxIdleConns(DefaultLoad.Readers)
	hw.SetMaxIdleConns(DefaultLoad.Writers)
	s.Systems = []*System{
		{Name: "qorb static", Reads: static, Writes: static, ReadCtx: replica, WriteCtx: primary},
		{Name: "qorb SRV", Reads: srv, Writes: srv, ReadCtx: replica, WriteCtx: primary},
		{Name: "HAProxy", Reads: hr, Writes: hw, ReadCtx: plain, WriteCtx: plain},
	}
	return s
}

// openDB opens a database, closed when the test ends.
func openDB(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("sql.Open(%q): %v", driver, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Result is one scenario's event and every system's figures, in the order
// of the stack's systems.
type Result struct {
	Event   Event
	Figures []Figures
}

// Kill runs the failover scenario: the leader's PostgreSQL is killed with
// SIGKILL and Patroni promotes another node by itself.
func (s *Stack) Kill(t testing.TB, cfg LoadConfig) Result {
	t.Helper()
	return s.run(t, "kill", cfg, true, func(leader *dbtest.PatroniNode) {
		leader.KillPostgres(t)
	})
}

// Switchover runs the planned switchover scenario: the leader's Patroni is
// asked through its REST API to hand over to the synchronous standby.
func (s *Stack) Switchover(t testing.TB, cfg LoadConfig) Result {
	t.Helper()
	s.Cluster.WaitHealthy(t)
	to := s.Cluster.SyncStandby(t)
	return s.run(t, "switchover", cfg, true, func(leader *dbtest.PatroniNode) {
		s.Cluster.Switchover(t, leader, to)
	})
}

// Outage runs the control-plane outage scenario: with Patroni in
// maintenance mode (so nothing fails over when it comes back), etcd and
// every node's Patroni daemon are frozen with SIGSTOP for d, while
// PostgreSQL keeps running.
func (s *Stack) Outage(t testing.TB, cfg LoadConfig, d time.Duration) Result {
	t.Helper()
	s.Cluster.SetMaintenance(t, true)
	res := s.run(t, "etcd + Patroni frozen "+d.String(), cfg, false, func(*dbtest.PatroniNode) {
		s.Cluster.PauseEtcd(t)
		for _, nd := range s.Cluster.Nodes {
			nd.PausePatroni(t)
		}
		time.Sleep(d) // the outage lasts d: the load runs meanwhile
		for _, nd := range s.Cluster.Nodes {
			nd.ResumePatroni(t)
		}
		s.Cluster.ResumeEtcd(t)
	})
	s.Cluster.SetMaintenance(t, false)
	return res
}

// Scenario timing.
const (
	warmUp = time.Second      // load before the event
	after  = 2 * time.Second  // load after every system wrote to the new primary
	waitUp = 60 * time.Second // for a system to write to the new primary
)

// run runs the load on every system, does event to the healthy cluster's
// leader, waits for a new leader if failover, and measures.
func (s *Stack) run(t testing.TB, scenario string, cfg LoadConfig, failover bool, event func(leader *dbtest.PatroniNode)) Result {
	t.Helper()
	c := s.Cluster
	old := c.WaitHealthy(t)
	s.HAProxy.WaitRouting(t, old)

	mon := startMonitor(t, c.Nodes)
	defer mon.stop()
	load := StartLoad(s.Systems, cfg, &s.ids)
	defer load.Stop()
	started := time.Now()
	if err := pollUntil(waitUp, func() bool { return load.Served(started) }); err != nil {
		load.Stop()
		t.Fatalf("%s: the load did not get going on every system: %v", scenario, err)
	}
	time.Sleep(warmUp) // a stretch of normal operation before the event

	ev := Event{Scenario: scenario, At: time.Now(), OldPort: old.Port(), NewPort: old.Port()}
	var watch *watcher
	if failover {
		watch = s.watchPromotion(t, old)
	}
	event(old)

	leader := old
	if failover {
		leader = c.WaitLeader(t, old)
		ev.Promoted, ev.NewPort = watch.wait(5 * time.Second)
		if ev.NewPort != leader.Port() {
			t.Fatalf("%s: the watcher saw %d promoted, Patroni's leader is %d", scenario, ev.NewPort, leader.Port())
		}
	}
	err := pollUntil(waitUp, func() bool {
		ok, _ := load.Wrote(ev.NewPort, ev.At)
		return ok
	})
	if err != nil {
		_, missing := load.Wrote(ev.NewPort, ev.At)
		t.Logf("%s: no write reached the primary %d within %v through %v", scenario, ev.NewPort, waitUp, missing)
	}
	time.Sleep(after) // the load runs on after the recovery
	load.Stop()
	mon.stop()
	ev.NoReplica = mon.noReplica(ev.At)
	ev.Stalled = mon.stallTime(ev.At)

	onPrimary := s.rowsOn(t, leader)
	res := Result{Event: ev}
	for i, sys := range s.Systems {
		reads, writes := load.Ops(i)
		res.Figures = append(res.Figures, compute(sys.Name, reads, writes, ev, onPrimary, mon))
	}
	return res
}

// rowsOn returns the ids of the rows the node holds.
func (s *Stack) rowsOn(t testing.TB, nd *dbtest.PatroniNode) map[int64]bool {
	t.Helper()
	db := openDB(t, "pgx", nd.DSN())
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT id FROM hastack_writes")
	if err != nil {
		t.Fatalf("reading the rows on %s: %v", nd.Name(), err)
	}
	defer rows.Close()
	ids := make(map[int64]bool)
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading the rows on %s: %v", nd.Name(), err)
	}
	return ids
}

// watcher polls every node but the old primary until one says it takes
// writes.
type watcher struct {
	done     chan struct{} // closed to stop
	found    chan struct{} // closed when a node was seen promoted
	wg       sync.WaitGroup
	promoted time.Time
	port     int
}

// watchPromotion starts a watcher that polls the nodes other than old every
// 10 ms, each on a connection of its own that it keeps.
func (s *Stack) watchPromotion(t testing.TB, old *dbtest.PatroniNode) *watcher {
	t.Helper()
	w := &watcher{done: make(chan struct{}), found: make(chan struct{})}
	var once sync.Once
	for _, nd := range s.Cluster.Nodes {
		if nd == old {
			continue
		}
		db := openDB(t, "pgx", nd.DSN()+" connect_timeout=1")
		db.SetMaxOpenConns(1)
		w.wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				var writable bool
				err := db.QueryRowContext(ctx, "SELECT NOT pg_is_in_recovery()").Scan(&writable)
				cancel()
				if err == nil && writable {
					now := time.Now()
					once.Do(func() {
						w.promoted, w.port = now, nd.Port()
						close(w.found)
					})
					return
				}
				select {
				case <-w.done:
					return
				case <-w.found:
					return
				case <-tick.C:
				}
			}
		})
	}
	return w
}

// wait waits at most d for the watcher to see a node promoted, stops it,
// and returns when and which node it saw promoted (zero, 0 if none).
func (w *watcher) wait(d time.Duration) (time.Time, int) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-w.found:
	case <-timer.C:
	}
	close(w.done)
	w.wg.Wait()
	return w.promoted, w.port
}

// pollUntil polls cond every 20 ms until it holds or d passes.
func pollUntil(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("still not the case after %v", d)
		}
		<-tick.C
	}
	return nil
}
