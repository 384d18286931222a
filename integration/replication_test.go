package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// healthInterval is testPolicy's pool_health_check_period: roles and
// positions are at most this old.
const healthInterval = 300 * time.Millisecond

// replServer is what the replication tests need of a dbtest server that
// replicates, of either engine.
type replServer interface {
	Port() int
	// DSN is the database/sql driver's own DSN for dbtest.User.
	DSN() string
	PauseReplay(testing.TB)
	ResumeReplay(testing.TB)
	// Pause and Resume stop and continue the server process (SIGSTOP,
	// SIGCONT).
	Pause(testing.TB)
	Resume(testing.TB)
}

// replCluster is a primary and two replicas of one engine, with a table
// rw(id, v, port) that records which server wrote each row.
type replCluster struct {
	e      engine
	driver string // the database/sql driver for direct connections
	// primary and replicas give the servers' current places, which
	// failover changes.
	primary  func() replServer
	replicas func() []replServer
	// failover stops the primary, promotes to and points the other
	// replicas at it.
	failover func(t testing.TB, to replServer)
	// promotedQuery returns true on a server that takes writes.
	promotedQuery string
	// setReadOnly turns a server's read_only on or off, as a demotion
	// would; nil where the engine cannot demote a primary in place.
	setReadOnly func(t testing.TB, s replServer, on bool)
	// sleepQuery sleeps for 10 s on the server.
	sleepQuery string
	// insertQuery inserts (id, v) and returns the port of the server that
	// wrote it; readQuery returns the port of the server that ran it and
	// the v of row id, NULL if it has no such row.
	insertQuery, readQuery string

	lastID atomic.Int64
}

// startReplCluster starts a primary with two replicas and creates rw.
func startReplCluster(t *testing.T, e engine) *replCluster {
	t.Helper()
	rc := &replCluster{e: e}
	var create string
	var waitReplicated func(testing.TB)
	switch e.name {
	case "postgres":
		c := dbtest.StartPostgresCluster(t, 2)
		rc.driver = "pgx"
		rc.primary = func() replServer { return c.Primary }
		rc.replicas = func() []replServer { return replServers(c.Standbys) }
		rc.failover = func(t testing.TB, to replServer) {
			t.Helper()
			c.Failover(t, to.(*dbtest.Postgres))
		}
		waitReplicated = c.WaitReplicated
		rc.promotedQuery = "SELECT NOT pg_is_in_recovery()"
		rc.sleepQuery = "SELECT pg_sleep(10)"
		create = "CREATE TABLE rw (id BIGINT PRIMARY KEY, v TEXT NOT NULL, port INT NOT NULL)"
		rc.insertQuery = "INSERT INTO rw (id, v, port) VALUES ($1, $2, inet_server_port()) RETURNING port"
		rc.readQuery = "SELECT inet_server_port(), (SELECT v FROM rw WHERE id = $1)"
	case "mariadb":
		c := dbtest.StartMariaDBCluster(t, 2)
		rc.driver = "mysql"
		rc.primary = func() replServer { return c.Primary }
		rc.replicas = func() []replServer { return replServers(c.Replicas) }
		rc.failover = func(t testing.TB, to replServer) {
			t.Helper()
			c.Failover(t, to.(*dbtest.MariaDB))
		}
		waitReplicated = c.WaitReplicated
		rc.promotedQuery = "SELECT @@global.read_only = 0"
		rc.sleepQuery = "SELECT SLEEP(10)"
		rc.setReadOnly = func(t testing.TB, s replServer, on bool) {
			t.Helper()
			s.(*dbtest.MariaDB).Exec(t, fmt.Sprintf("SET GLOBAL read_only = %t", on))
		}
		create = "CREATE TABLE rw (id BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL, port INT NOT NULL)"
		rc.insertQuery = "INSERT INTO rw (id, v, port) VALUES (?, ?, @@port) RETURNING port"
		rc.readQuery = "SELECT @@port, (SELECT v FROM rw WHERE id = ?)"
	default:
		t.Fatalf("no replication cluster for engine %s", e.name)
	}
	direct := rc.direct(t, rc.primary())
	if _, err := direct.ExecContext(t.Context(), create); err != nil {
		t.Fatalf("%s: %v", create, err)
	}
	waitReplicated(t)
	return rc
}

func replServers[S replServer](ss []S) []replServer {
	out := make([]replServer, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// direct opens a plain database/sql connection pool to s, without qorb.
func (rc *replCluster) direct(t testing.TB, s replServer) *sql.DB {
	t.Helper()
	db, err := sql.Open(rc.driver, s.DSN())
	if err != nil {
		t.Fatalf("sql.Open(%q): %v", rc.driver, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("connecting to %d: %v", s.Port(), err)
	}
	return db
}

// dsnWith returns a static qorb DSN that lists the servers' ports, with
// the engine's parameters, policy's and extra.
func (rc *replCluster) dsnWith(ports []int, policy, extra url.Values) string {
	q := url.Values{}
	for _, vs := range []url.Values{rc.e.params, policy, extra} {
		for k, v := range vs {
			q[k] = v
		}
	}
	hosts := make([]string, len(ports))
	for i, p := range ports {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return fmt.Sprintf("%s://%s:%s@%s/%s?%s", strings.TrimSuffix(rc.e.scheme, "+srv"),
		dbtest.User, dbtest.Password, strings.Join(hosts, ","), dbtest.Database, q.Encode())
}

// open opens a qorb database over the primary and the replicas and waits
// until the pool knows every backend's role.
func (rc *replCluster) open(t *testing.T, extra url.Values) (*sql.DB, *qorb.Connector) {
	t.Helper()
	return rc.openWith(t, testPolicy, extra)
}

// openWith is open with policy in place of the test policy; nil policy
// leaves qorb's defaults.
func (rc *replCluster) openWith(t *testing.T, policy, extra url.Values) (*sql.DB, *qorb.Connector) {
	t.Helper()
	want := map[int]resolver.Role{rc.primary().Port(): resolver.RolePrimary}
	ports := []int{rc.primary().Port()}
	for _, r := range rc.replicas() {
		want[r.Port()] = resolver.RoleReplica
		ports = append(ports, r.Port())
	}
	db, conn := openConnector(t, rc.dsnWith(ports, policy, extra))
	waitRoles(t, conn, 10*time.Second, want)
	return db, conn
}

// openConnector opens a qorb database on dsn through qorb.OpenConnector,
// closed when the test ends.
func openConnector(t testing.TB, dsn string) (*sql.DB, *qorb.Connector) {
	t.Helper()
	conn, err := qorb.OpenConnector(dsn)
	if err != nil {
		t.Fatalf("OpenConnector: %v", err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db, conn
}

// nextID returns a row id not used before in the cluster.
func (rc *replCluster) nextID() int64 { return rc.lastID.Add(1) }

// write inserts a new row through db and returns its id and the port of
// the server that wrote it.
func (rc *replCluster) write(ctx context.Context, db *sql.DB) (id int64, port int, err error) {
	id = rc.nextID()
	err = db.QueryRowContext(ctx, rc.insertQuery, id, rowValue(id)).Scan(&port)
	return id, port, err
}

func rowValue(id int64) string { return "row " + strconv.FormatInt(id, 10) }

// read reads row id through db: the port of the server that ran the read,
// and whether that server had the row.
func (rc *replCluster) read(ctx context.Context, db *sql.DB, id int64) (port int, seen bool, err error) {
	var v sql.NullString
	err = db.QueryRowContext(ctx, rc.readQuery, id).Scan(&port, &v)
	if err == nil && v.Valid && v.String != rowValue(id) {
		err = fmt.Errorf("row %d reads %q, want %q", id, v.String, rowValue(id))
	}
	return port, v.Valid, err
}

// keepWriting inserts a row into the primary every 20ms, through a direct
// connection, until the returned stop is called (or the test ends), and
// then reports failed writes.
func (rc *replCluster) keepWriting(t testing.TB) (stop func()) {
	t.Helper()
	direct := rc.direct(t, rc.primary())
	done := make(chan struct{})
	var wg sync.WaitGroup
	var writes int
	var firstErr error
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _, err := rc.write(ctx, direct)
			cancel()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			writes++
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			if firstErr != nil {
				t.Errorf("background write to the primary: %v", firstErr)
			}
			t.Logf("%d background writes to the primary", writes)
		})
	}
	t.Cleanup(stop)
	return stop
}

// pause pauses replay on r until the returned resume is called or the
// test ends.
func pause(t testing.TB, r replServer) (resume func()) {
	t.Helper()
	r.PauseReplay(t)
	paused := true
	resume = func() {
		t.Helper()
		if paused {
			paused = false
			r.ResumeReplay(t)
		}
	}
	t.Cleanup(resume)
	return resume
}

// readPorts runs n queries of query through db with ctx, from workers
// goroutines at once, and counts the backends that served them by port.
// A query that fails is an error of the test.
func readPorts(ctx context.Context, t testing.TB, db *sql.DB, query string, n, workers int) map[int]int {
	t.Helper()
	return countPorts(ctx, t, sqlPort(db, query), n, workers)
}

// countPorts is readPorts through port, either of qorb's faces.
func countPorts(ctx context.Context, t testing.TB, port portFunc, n, workers int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			m := n / workers
			if w < n%workers {
				m++
			}
			for range m {
				qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				p, err := port(qctx)
				cancel()
				if err != nil {
					t.Errorf("port query: %v", err)
					return
				}
				mu.Lock()
				counts[p]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts
}

// checkServed checks that the backends that served counts are exactly
// want, and, if spread, that each served within 15% of an equal share.
func checkServed(t testing.TB, what string, counts map[int]int, want []int, spread bool) {
	t.Helper()
	total := 0
	for _, n := range counts {
		total += n
	}
	t.Logf("%s: %v", what, counts)
	for p, n := range counts {
		if !slices.Contains(want, p) {
			t.Errorf("%s: backend %d served %d of %d, want only %v", what, p, n, total, want)
		}
	}
	share := total / len(want)
	for _, p := range want {
		n := counts[p]
		switch {
		case n == 0:
			t.Errorf("%s: backend %d served none of %d, want each of %v to serve", what, p, total, want)
		case spread && (n < share*85/100 || n > share*115/100):
			t.Errorf("%s: backend %d served %d of %d, want %d±15%%", what, p, n, total, share)
		}
	}
}

// backendRoles returns each backend's role in the connector's stats, by
// port.
func backendRoles(conn *qorb.Connector) map[int]resolver.Role {
	out := map[int]resolver.Role{}
	for p, b := range backendsByPort(conn) {
		out[p] = b.Backend.Role
	}
	return out
}

// backendsByPort returns the connector's stats of each backend, by port.
func backendsByPort(conn *qorb.Connector) map[int]pool.BackendStats {
	out := map[int]pool.BackendStats{}
	for _, b := range conn.Stats().Backends {
		_, port, err := net.SplitHostPort(b.Backend.Addr)
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			continue
		}
		out[p] = b
	}
	return out
}

// waitRoles waits at most d until the connector's stats give each port of
// want its role there.
func waitRoles(t testing.TB, conn *qorb.Connector, d time.Duration, want map[int]resolver.Role) {
	t.Helper()
	eventually(t, d, fmt.Sprintf("the pool's roles are %v", want), func() (bool, string) {
		got := backendRoles(conn)
		for p, r := range want {
			if got[p] != r {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
}

// waitOnline waits at most d until the connector's stats have each of
// ports online.
func waitOnline(t testing.TB, conn *qorb.Connector, d time.Duration, ports []int) {
	t.Helper()
	eventually(t, d, fmt.Sprintf("backends %v are online", ports), func() (bool, string) {
		got := map[int]pool.Health{}
		for p, b := range backendsByPort(conn) {
			got[p] = b.Health
		}
		for _, p := range ports {
			if got[p] != pool.HealthOnline {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
}

// eventually polls cond until it holds, or fails the test after d with
// what and the last state cond described.
func eventually(t testing.TB, d time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s (last: %s)", d, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ports[S interface{ Port() int }](ss ...S) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i] = s.Port()
	}
	return out
}

// TestReplication runs the role-aware routing scenarios against a primary
// with two replicas of each engine (PostgreSQL streaming standbys,
// MariaDB GTID replicas), in order on one cluster: failover, which
// changes the cluster for good, comes last.
func TestReplication(t *testing.T) {
	forEngine(t, func(t *testing.T, e engine) {
		rc := startReplCluster(t, e)
		t.Run("Routing", func(t *testing.T) { testRouting(t, rc) })
		t.Run("LagLimit", func(t *testing.T) { testLagLimit(t, rc) })
		t.Run("ReadYourWrites", func(t *testing.T) { testReadYourWrites(t, rc) })
		if rc.setReadOnly != nil {
			t.Run("ReadOnlyRecheck", func(t *testing.T) { testReadOnlyRecheck(t, rc) })
		}
		t.Run("ReplicaSRV", func(t *testing.T) { testReplicaSRV(t, rc) })
		t.Run("LongQuery", func(t *testing.T) { testLongQuery(t, rc) })
		t.Run("HungReplica", func(t *testing.T) { testHungReplica(t, rc) })
		t.Run("Failover", func(t *testing.T) { testFailover(t, rc) })
	})
}

// testRouting: once the pool has learned the roles, replica reads spread
// evenly over the replicas and never reach the primary, one at a time and
// from 8 goroutines; prefer-replica reads stay on the replicas while they
// are online; writes, by the DSN's default (target_session_attrs=
// read-write) and with RolePrimary, all reach the primary; and each
// target_session_attrs value picks its backends.
func testRouting(t *testing.T, rc *replCluster) {
	db, _ := rc.open(t, url.Values{"target_session_attrs": {"read-write"}})
	primary, replicas := rc.primary().Port(), ports(rc.replicas()...)
	replicaCtx := qorb.WithRole(t.Context(), qorb.RoleReplica)

	checkServed(t, "1000 replica reads, one at a time",
		readPorts(replicaCtx, t, db, rc.e.portQuery, 1000, 1), replicas, true)
	checkServed(t, "1000 replica reads from 8 goroutines",
		readPorts(replicaCtx, t, db, rc.e.portQuery, 1000, 8), replicas, true)
	checkServed(t, "200 prefer-replica reads",
		readPorts(qorb.WithRole(t.Context(), qorb.RolePreferReplica), t, db, rc.e.portQuery, 200, 1), replicas, false)

	writes := func(ctx context.Context, what string, n, workers int) {
		t.Helper()
		var mu sync.Mutex
		counts := map[int]int{}
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range n / workers {
					_, p, err := rc.write(ctx, db)
					if err != nil {
						t.Errorf("%s: %v", what, err)
						return
					}
					mu.Lock()
					counts[p]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		checkServed(t, what, counts, []int{primary}, false)
	}
	writes(t.Context(), "200 writes by the default role", 200, 1)
	writes(qorb.WithRole(t.Context(), qorb.RolePrimary), "200 writes with RolePrimary from 8 goroutines", 200, 8)

	all := append([]int{primary}, replicas...)
	for _, tt := range []struct {
		attrs string
		want  []int
	}{
		{"read-write", []int{primary}},
		{"primary", []int{primary}},
		{"read-only", replicas},
		{"standby", replicas},
		{"prefer-standby", replicas},
		{"any", all},
	} {
		t.Run("target_session_attrs="+tt.attrs, func(t *testing.T) {
			db, _ := rc.open(t, url.Values{"target_session_attrs": {tt.attrs}})
			checkServed(t, "300 reads by the default role",
				readPorts(t.Context(), t, db, rc.e.portQuery, 300, 1), tt.want, false)
		})
	}
}

// testLagLimit: with pool_max_lag=1s, a replica whose replay is paused
// while the primary keeps taking writes gets no replica read once it lags
// by more than the limit (found within the limit plus a few health
// checks), the other replica serves every read meanwhile, and the paused
// one serves again once it resumes.
func testLagLimit(t *testing.T, rc *replCluster) {
	db, _ := rc.open(t, lagPolicy)
	lagLimit(t, rc, sqlPort(db, rc.e.portQuery))
}

// lagPolicy is testLagLimit's pool_max_lag.
var lagPolicy = url.Values{"pool_max_lag": {time.Second.String()}}

// lagLimit is testLagLimit through port, a pool opened with lagPolicy.
func lagLimit(t *testing.T, rc *replCluster, port portFunc) {
	const maxLag = time.Second
	replicaCtx := qorb.WithRole(t.Context(), qorb.RoleReplica)
	lagging, other := rc.replicas()[1], rc.replicas()[0]

	stopWriting := rc.keepWriting(t)
	checkServed(t, "200 replica reads while no replica lags",
		countPorts(replicaCtx, t, port, 200, 1), ports(other, lagging), false)

	resume := pause(t, lagging)
	pausedAt := time.Now()
	eventually(t, maxLag+20*healthInterval, fmt.Sprintf("replica reads stop reaching paused replica %d", lagging.Port()),
		func() (bool, string) {
			counts := countPorts(replicaCtx, t, port, 20, 1)
			return counts[lagging.Port()] == 0, fmt.Sprintf("20 reads served by %v", counts)
		})
	t.Logf("paused replica %d kept out of reads %v after the pause", lagging.Port(), time.Since(pausedAt).Round(time.Millisecond))
	checkServed(t, "300 replica reads from 4 goroutines while one replica lags",
		countPorts(replicaCtx, t, port, 300, 4), ports(other), false)

	resume()
	resumedAt := time.Now()
	eventually(t, 20*healthInterval, fmt.Sprintf("replica reads reach resumed replica %d again", lagging.Port()),
		func() (bool, string) {
			counts := countPorts(replicaCtx, t, port, 20, 1)
			return counts[lagging.Port()] > 0, fmt.Sprintf("20 reads served by %v", counts)
		})
	t.Logf("resumed replica %d serves reads %v after the resume", lagging.Port(), time.Since(resumedAt).Round(time.Millisecond))
	stopWriting()
}

// testReadYourWrites: 200 times, a row written on the primary is read
// back with its write token and the replica role, and every read sees it:
// 100 times with both replicas replaying, then 100 times with one paused,
// so the token has to steer the reads around it (no pool_max_lag here to
// do it instead). A read may fall back to the primary when no replica
// has replayed the write yet (on a loaded machine, many do), but once a
// replica has replayed it, a read with the token is served there.
func testReadYourWrites(t *testing.T, rc *replCluster) {
	db, _ := rc.open(t, nil)
	readYourWrites(t, rc, rwFace{
		write: func(ctx context.Context) (int64, int, error) { return rc.write(ctx, db) },
		token: func(ctx context.Context) (qorb.Token, error) { return qorb.WriteToken(ctx, db) },
		read:  func(ctx context.Context, id int64) (int, bool, error) { return rc.read(ctx, db, id) },
	})
}

// rwFace is what the read-your-writes scenario needs of one of qorb's
// faces: to write a new row (see replCluster.write), to take a write
// token, and to read a row back (see replCluster.read).
type rwFace struct {
	write func(ctx context.Context) (id int64, port int, err error)
	token func(ctx context.Context) (qorb.Token, error)
	read  func(ctx context.Context, id int64) (port int, seen bool, err error)
}

// readYourWrites is testReadYourWrites through f.
func readYourWrites(t *testing.T, rc *replCluster, f rwFace) {
	primary := rc.primary().Port()
	replicas := rc.replicas()
	iterations := func(what string, n int, avoid int) {
		t.Helper()
		counts := map[int]int{}
		start := time.Now()
		for i := range n {
			id, _, err := f.write(qorb.WithRole(t.Context(), qorb.RolePrimary))
			if err != nil {
				t.Fatalf("%s: write %d: %v", what, i, err)
			}
			tok, err := f.token(t.Context())
			if err != nil {
				t.Fatalf("%s: WriteToken after write %d: %v", what, i, err)
			}
			ctx, cancel := context.WithTimeout(qorb.WithWriteToken(qorb.WithRole(t.Context(), qorb.RoleReplica), tok), 5*time.Second)
			port, seen, err := f.read(ctx, id)
			cancel()
			switch {
			case err != nil:
				t.Fatalf("%s: read %d with token %q: %v", what, i, tok, err)
			case !seen:
				t.Errorf("%s: read %d with token %q on backend %d did not see row %d", what, i, tok, port, id)
			case port == avoid:
				t.Errorf("%s: read %d with token %q reached paused replica %d", what, i, tok, port)
			}
			counts[port]++
		}
		t.Logf("%s: %d reads in %v, served by %v (primary %d)", what, n, time.Since(start).Round(time.Millisecond), counts, primary)
		// Replicas replay within milliseconds, but the read follows the
		// write at once, and on a loaded machine replay lags, so the
		// primary may serve any share of these reads. What must hold
		// whatever the load: a replica serves a read with the token once
		// it has replayed the write.
		if counts[primary] == n {
			t.Errorf("%s: the primary served all %d reads", what, n)
		}
		id, _, err := f.write(qorb.WithRole(t.Context(), qorb.RolePrimary))
		if err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		tok, err := f.token(t.Context())
		if err != nil {
			t.Fatalf("%s: WriteToken: %v", what, err)
		}
		eventually(t, 10*time.Second, what+": a replica serves a read with the token", func() (bool, string) {
			ctx, cancel := context.WithTimeout(qorb.WithWriteToken(qorb.WithRole(t.Context(), qorb.RoleReplica), tok), 5*time.Second)
			defer cancel()
			port, seen, err := f.read(ctx, id)
			switch {
			case err != nil:
				t.Fatalf("%s: read with token %q: %v", what, tok, err)
			case !seen:
				t.Errorf("%s: read with token %q on backend %d did not see row %d", what, tok, port, id)
			case port == avoid:
				t.Errorf("%s: read with token %q reached paused replica %d", what, tok, port)
			}
			return port != primary, fmt.Sprintf("served by %d (primary %d)", port, primary)
		})
	}
	iterations("both replicas replaying", 100, 0)

	paused := replicas[1]
	resume := pause(t, paused)
	iterations(fmt.Sprintf("replica %d paused", paused.Port()), 100, paused.Port())
	resume()
}

// testReadOnlyRecheck: a write that fails because the primary turned
// read-only makes the pool re-check that backend's role at once, not at
// the next health check (an hour away here): within a second it is a
// replica, it takes replica reads, and a write then fails naming the
// missing primary role. It runs on MariaDB only: a PostgreSQL primary
// cannot become a standby without a restart.
func testReadOnlyRecheck(t *testing.T, rc *replCluster) {
	db, conn := rc.open(t, url.Values{"pool_health_check_period": {"1h"}, "target_session_attrs": {"read-write"}})
	primary := rc.primary()
	if _, p, err := rc.write(t.Context(), db); err != nil || p != primary.Port() {
		t.Fatalf("write before the demotion: served by %d, error %v; want the primary %d", p, err, primary.Port())
	}

	rc.setReadOnly(t, primary, true)
	t.Cleanup(func() { rc.setReadOnly(t, primary, false) })
	if _, _, err := rc.write(t.Context(), db); err == nil {
		t.Fatal("a write on the read-only primary succeeded")
	} else {
		t.Logf("write on the read-only primary: %v", err)
	}
	want := map[int]resolver.Role{primary.Port(): resolver.RoleReplica}
	for _, r := range rc.replicas() {
		want[r.Port()] = resolver.RoleReplica
	}
	waitRoles(t, conn, time.Second, want)
	checkServed(t, "60 replica reads", readPorts(qorb.WithRole(t.Context(), qorb.RoleReplica), t, db, rc.e.portQuery, 60, 1),
		append([]int{primary.Port()}, ports(rc.replicas()...)...), false)

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, p, err := rc.write(ctx, db); err == nil {
		t.Errorf("a write with no primary left succeeded on %d", p)
	} else if !strings.Contains(err.Error(), "primary") {
		t.Errorf("a write with no primary left failed with %q, which does not name the primary role", err)
	}
}

// testReplicaSRV: with replica_srv, the DSN's SRV name lists the primary
// and the second name the replicas, and the roles come from DNS, not from
// the servers: a standalone server, which its role query would call a
// primary, listed under the replica name is a replica to the pool; it
// takes replica reads along with the real replicas and no write.
//
// Roles from DNS are known before the pool has connected to anything, so
// the reads wait until every backend is online too: a replica that
// connects while the reads run joins the round robin level with those
// that served meanwhile, owing and owed nothing (see pool's level), and
// the 300 reads, a few tens of milliseconds, can be over before it does.
func testReplicaSRV(t *testing.T, rc *replCluster) {
	loner := rc.e.start(t, 1)[0]
	primary, replicas := rc.primary().Port(), append(ports(rc.replicas()...), loner.Port())

	dns := dnstest.NewServer(t)
	publish := func(name string, ports ...int) {
		var recs []dnstest.SRV
		for _, p := range ports {
			host := fmt.Sprintf("n%d.%s.", p, name)
			dns.SetA(host, 60, "127.0.0.1")
			recs = append(recs, dnstest.SRV{Weight: 1, Port: uint16(p), Target: host, TTL: 1})
		}
		dns.SetSRV(rc.e.service+"."+name+".", recs...)
	}
	publish("primary.test", primary)
	publish("replicas.test", replicas...)

	q := url.Values{"dns_server": {dns.Addr()}, "replica_srv": {"replicas.test"}}
	for _, vs := range []url.Values{rc.e.params, testPolicy} {
		for k, v := range vs {
			q[k] = v
		}
	}
	db, conn := openConnector(t, fmt.Sprintf("%s://%s:%s@primary.test/%s?%s",
		rc.e.scheme, dbtest.User, dbtest.Password, dbtest.Database, q.Encode()))
	want := map[int]resolver.Role{primary: resolver.RolePrimary}
	for _, p := range replicas {
		want[p] = resolver.RoleReplica
	}
	waitRoles(t, conn, 10*time.Second, want)
	waitOnline(t, conn, 10*time.Second, append([]int{primary}, replicas...))

	checkServed(t, "300 replica reads", readPorts(qorb.WithRole(t.Context(), qorb.RoleReplica),
		t, db, rc.e.portQuery, 300, 1), replicas, true)
	checkServed(t, "100 primary reads", readPorts(qorb.WithRole(t.Context(), qorb.RolePrimary),
		t, db, rc.e.portQuery, 100, 1), []int{primary}, false)
	counts := map[int]int{}
	for i := range 100 {
		_, p, err := rc.write(qorb.WithRole(t.Context(), qorb.RolePrimary), db)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		counts[p]++
	}
	checkServed(t, "100 writes", counts, []int{primary}, false)
	if got := backendRoles(conn); len(got) != len(want) {
		t.Errorf("the pool's backends are %v, want %v", got, want)
	}
}

// timed is one operation of a load run.
type timed struct {
	start, end time.Time
	port       int
	err        error
}

// testFailover stops the primary and promotes the first replica while 32
// goroutines read with the replica role and 8 write by the DSN's default
// role (target_session_attrs=read-write), with qorb's default settings
// (health checks 30 s apart), and lets the load run on for a second after
// the first write reaches the new primary. Writes reach the new primary
// within 2 s of its promotion (seen by a watcher polling it directly;
// the hunt for the primary asks every 250-500 ms, so this leaves a busy
// machine a wide margin), and every write begun later goes there. No
// write is acknowledged by the old primary after the promotion. No
// replica read fails at any time: replica reads never go to the old
// primary, and the promoted replica stays up, serving reads until the
// pool learns it is the primary. Replica reads that start after a write
// reached it never reach it, the other replica serves them, and reads
// never stop for a second.
func testFailover(t *testing.T, rc *replCluster) {
	const writeGap = 2 * time.Second
	db, _ := rc.openWith(t, nil, url.Values{"target_session_attrs": {"read-write"}})
	oldPrimary, to, other := rc.primary().Port(), rc.replicas()[0], rc.replicas()[1]
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
		mu         sync.Mutex
		reads      []timed
		writes     []timed
		promotedAt time.Time // when the watcher saw to take writes
		watchErr   error
		wg         sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for !stopped() {
				start := time.Now()
				ctx, cancel := context.WithTimeout(qorb.WithRole(context.Background(), qorb.RoleReplica), 5*time.Second)
				var p int
				err := db.QueryRowContext(ctx, rc.e.portQuery).Scan(&p)
				cancel()
				mu.Lock()
				reads = append(reads, timed{start, time.Now(), p, err})
				mu.Unlock()
			}
		})
	}
	wroteToNew := make(chan struct{})
	var wroteOnce sync.Once
	for range 8 {
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for !stopped() {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, p, err := rc.write(ctx, db)
				cancel()
				mu.Lock()
				writes = append(writes, timed{start, time.Now(), p, err})
				mu.Unlock()
				if err == nil && p == to.Port() {
					wroteOnce.Do(func() { close(wroteToNew) })
				}
				select {
				case <-stop:
				case <-tick.C:
				}
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for !stopped() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			var promoted bool
			err := watcher.QueryRowContext(ctx, rc.promotedQuery).Scan(&promoted)
			now := time.Now()
			cancel()
			mu.Lock()
			if err != nil {
				watchErr = err
			} else if promoted {
				promotedAt = now
			}
			mu.Unlock()
			if promoted {
				return
			}
			select {
			case <-stop:
			case <-tick.C:
			}
		}
	})
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopLoad) // before the database closes

	eventually(t, 10*time.Second, "the load reaches both replicas and the primary", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		served := map[int]int{}
		for _, op := range append(slices.Clone(reads), writes...) {
			if op.err == nil {
				served[op.port]++
			}
		}
		return served[to.Port()] > 0 && served[other.Port()] > 0 && served[oldPrimary] > 0, fmt.Sprint(served)
	})
	failoverAt := time.Now()
	rc.failover(t, to)
	t.Logf("failover to %d took %v", to.Port(), time.Since(failoverAt).Round(time.Millisecond))
	select {
	case <-wroteToNew:
	case <-time.After(10 * time.Second):
		stopLoad()
		t.Fatalf("no write reached the new primary %d within 10s of the failover (watcher: promoted at %v, last error %v)",
			to.Port(), promotedAt, watchErr)
	}
	time.Sleep(time.Second) // the load runs on for a second
	stopLoad()

	if promotedAt.IsZero() {
		t.Fatalf("the watcher did not see %d promoted (last error %v)", to.Port(), watchErr)
	}
	t.Logf("%d replica reads, %d writes; %d took writes %v after the failover began",
		len(reads), len(writes), to.Port(), promotedAt.Sub(failoverAt).Round(time.Millisecond))

	// Writes: the first on the new primary within the bound, none
	// anywhere else, none begun after it failing, none acknowledged by
	// the old primary once the new one took writes.
	sort.Slice(writes, func(i, j int) bool { return writes[i].end.Before(writes[j].end) })
	first := slices.IndexFunc(writes, func(w timed) bool { return w.err == nil && w.port == to.Port() })
	firstAt := writes[first].end
	failed := 0
	for _, w := range writes {
		switch {
		case w.err != nil && w.start.After(firstAt):
			t.Errorf("write begun %v after the first on the new primary failed: %v", w.start.Sub(firstAt), w.err)
		case w.err != nil:
			failed++
		case w.port == oldPrimary && w.end.After(promotedAt):
			t.Errorf("a write was acknowledged by the old primary %d %v after the promotion", oldPrimary, w.end.Sub(promotedAt))
		case w.port != oldPrimary && w.port != to.Port():
			t.Errorf("a write reached %d, neither the old primary %d nor the new one", w.port, oldPrimary)
		case w.start.After(firstAt) && w.port != to.Port():
			t.Errorf("write begun %v after the first on the new primary reached %d", w.start.Sub(firstAt), w.port)
		}
	}
	delay := firstAt.Sub(promotedAt)
	t.Logf("first write on the new primary %v after its promotion; %d writes failed before it", delay.Round(time.Millisecond), failed)
	if delay > writeGap {
		t.Errorf("writes reached the new primary %v after its promotion, want within %v", delay, writeGap)
	}

	// Replica reads: none failed, none on the old primary, none on the
	// new primary once it took a write.
	sort.Slice(reads, func(i, j int) bool { return reads[i].end.Before(reads[j].end) })
	var errs, onNew, onOther int
	var maxGap time.Duration
	for i, r := range reads {
		if i > 0 {
			maxGap = max(maxGap, r.end.Sub(reads[i-1].end))
		}
		switch {
		case r.err != nil:
			errs++
			if errs <= 5 {
				t.Errorf("replica read %v after the failover began failed: %v", r.end.Sub(failoverAt), r.err)
			}
		case r.port == oldPrimary:
			t.Errorf("a replica read reached the old primary %d, %v after the failover began", r.port, r.end.Sub(failoverAt))
		case r.start.After(firstAt) && r.port == to.Port():
			onNew++
		case r.start.After(firstAt) && r.port == other.Port():
			onOther++
		}
	}
	t.Logf("replica reads begun after the first write on the new primary: %d on the other replica, %d on the new primary; longest gap between reads %v",
		onOther, onNew, maxGap.Round(time.Millisecond))
	if errs > 0 {
		t.Errorf("%d of %d replica reads failed, want none", errs, len(reads))
	}
	if onNew > 0 {
		t.Errorf("%d replica reads begun after the new primary %d took a write reached it", onNew, to.Port())
	}
	if onOther == 0 {
		t.Errorf("no replica read begun after the new primary took a write reached the other replica %d", other.Port())
	}
	if maxGap > time.Second {
		t.Errorf("replica reads stopped for %v, want less than a second", maxGap)
	}
}
