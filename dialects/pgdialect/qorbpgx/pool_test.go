package qorbpgx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/pgdialect/qorbpgx"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/statshttp"
)

// The machine's own PostgreSQL server (scripts/setup starts it).
const serverAddr = "127.0.0.1:5432"

// needServer fails the test when the local server does not answer; in
// -short mode it skips it.
func needServer(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", serverAddr, time.Second)
	if err != nil {
		if testing.Short() {
			t.Skipf("no PostgreSQL server at %s: %v", serverAddr, err)
		}
		t.Fatalf("no PostgreSQL server at %s (scripts/setup starts it): %v", serverAddr, err)
	}
	c.Close()
}

// dsn names the local server with an application name of the test's own,
// to count its sessions.
func dsn(app, extra string) string {
	return fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable&application_name=%s%s", serverAddr, app, extra)
}

func newPool(t *testing.T, cfg *qorbpgx.Config) *qorbpgx.Pool {
	t.Helper()
	p, err := qorbpgx.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func parse(t *testing.T, s string) *qorbpgx.Config {
	t.Helper()
	cfg, err := qorbpgx.ParseConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// sessions counts the server's sessions of application app, through a
// connection of its own.
func sessions(t *testing.T, app string) int {
	t.Helper()
	c, err := pgx.Connect(t.Context(), fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable", serverAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// noSessionsLeft waits, polling, for the server to end the sessions of
// application app, which it does soon after the client says goodbye.
func noSessionsLeft(t *testing.T, app string) {
	t.Helper()
	waitFor(t, "no session of "+app+" is left", func() bool { return sessions(t, app) == 0 })
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoolOperations(t *testing.T) {
	needServer(t)
	p := newPool(t, parse(t, dsn("qorbpgx_ops", "&pool_max_conns=4")))
	ctx := t.Context()

	var one int
	if err := p.QueryRow(ctx, "SELECT $1::int", 7).Scan(&one); err != nil || one != 7 {
		t.Fatalf("QueryRow = %d, %v; want 7", one, err)
	}
	if err := p.QueryRow(ctx, "SELECT 1 WHERE false").Scan(&one); !errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("QueryRow of no row: %v, want pgx.ErrNoRows", err)
	}
	if err := p.QueryRow(ctx, "SELECT 1/0").Scan(&one); err == nil {
		t.Error("QueryRow of 1/0 succeeded")
	}

	rows, err := p.Query(ctx, "SELECT g FROM generate_series(1, 100) g")
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for rows.Next() {
		var g int
		if err := rows.Scan(&g); err != nil {
			t.Fatal(err)
		}
		sum += g
	}
	if err := rows.Err(); err != nil || sum != 5050 {
		t.Errorf("Query: sum %d, err %v; want 5050", sum, err)
	}
	if got := rows.CommandTag().RowsAffected(); got != 100 {
		t.Errorf("CommandTag rows %d, want 100", got)
	}
	empty, err := p.Query(ctx, "SELECT 1 WHERE false")
	if err != nil {
		t.Fatal(err)
	}
	if empty.Next() || empty.Err() != nil {
		t.Errorf("Query of no rows: Next true or Err %v", empty.Err())
	}
	empty.Close()
	ns, err := pgx.CollectRows(must(p.Query(ctx, "SELECT g FROM generate_series(1, 3) g")), pgx.RowTo[int])
	if err != nil || len(ns) != 3 {
		t.Errorf("CollectRows = %v, %v", ns, err)
	}

	if _, err := p.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS never_seen (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "DROP TABLE IF EXISTS qorbpgx_t; CREATE TABLE qorbpgx_t (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Exec(context.Background(), "DROP TABLE IF EXISTS qorbpgx_t") })

	n, err := p.CopyFrom(ctx, pgx.Identifier{"qorbpgx_t"}, []string{"id", "v"},
		pgx.CopyFromSlice(50, func(i int) ([]any, error) { return []any{i, fmt.Sprint("v", i)}, nil }))
	if err != nil || n != 50 {
		t.Fatalf("CopyFrom = %d, %v", n, err)
	}

	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO qorbpgx_t VALUES (100, 'tx')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("second Rollback: %v, want ErrTxClosed", err)
	}
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO qorbpgx_t VALUES (101, 'committed')")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	b := &pgx.Batch{}
	b.Queue("SELECT count(*) FROM qorbpgx_t")
	b.Queue("SELECT v FROM qorbpgx_t WHERE id = 101")
	br := p.SendBatch(ctx, b)
	var count int
	var v string
	if err := br.QueryRow().Scan(&count); err != nil {
		t.Fatal(err)
	}
	if err := br.QueryRow().Scan(&v); err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if count != 51 || v != "committed" {
		t.Errorf("batch read count %d and %q, want 51 and committed", count, v)
	}
	if err := p.Ping(ctx); err != nil {
		t.Error(err)
	}
	if st := p.Stat(); st.AcquiredConns() != 0 || st.TotalConns() == 0 || st.AcquireCount() < 10 || st.MaxConns() != 4 {
		t.Errorf("Stat: acquired %d, total %d, acquires %d, max %d; want 0, >0, >=10, 4",
			st.AcquiredConns(), st.TotalConns(), st.AcquireCount(), st.MaxConns())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestAcquireKeepsBackendSession: an acquired connection is one session
// until released, and a session left inside a transaction is not reused.
func TestAcquireKeepsBackendSession(t *testing.T) {
	needServer(t)
	p := newPool(t, parse(t, dsn("qorbpgx_acquire", "&pool_max_conns=1")))
	ctx := t.Context()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid1, pid2 int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SET application_name = 'qorbpgx_acquire_set'"); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil || pid2 != pid1 {
		t.Fatalf("second query on the acquired conn ran in session %d (%v), want %d", pid2, err, pid1)
	}
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	c.Release()
	c.Release() // a second Release does nothing

	var pid3 int
	if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid3); err != nil {
		t.Fatal(err)
	}
	if pid3 == pid1 {
		t.Errorf("a connection released inside a transaction was reused (session %d)", pid1)
	}
	var status string
	if err := p.QueryRow(ctx, "SELECT current_setting('transaction_isolation')").Scan(&status); err != nil {
		t.Fatal(err)
	}
}

// TestHooks: AfterConnect, PrepareConn, AfterRelease and BeforeClose run
// when pgxpool's do, and their answers count.
func TestHooks(t *testing.T) {
	needServer(t)
	cfg := parse(t, dsn("qorbpgx_hooks", "&pool_max_conns=2"))
	var connects, prepares, releases, closes atomic.Int32
	var refuseRelease, refusePrepare atomic.Bool
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		connects.Add(1)
		_, err := c.Exec(ctx, "SET search_path = pg_catalog")
		return err
	}
	cfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		prepares.Add(1)
		if refusePrepare.Load() {
			return false, errors.New("refused")
		}
		return true, nil
	}
	cfg.AfterRelease = func(*pgx.Conn) bool {
		releases.Add(1)
		return !refuseRelease.Load()
	}
	cfg.BeforeClose = func(*pgx.Conn) { closes.Add(1) }
	p, err := qorbpgx.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var path string
	if err := p.QueryRow(ctx, "SHOW search_path").Scan(&path); err != nil || path != "pg_catalog" {
		t.Errorf("search_path %q (%v): AfterConnect did not run on the connection", path, err)
	}
	if connects.Load() == 0 || prepares.Load() != 1 || releases.Load() != 1 {
		t.Errorf("connects %d, prepares %d, releases %d; want >0, 1, 1", connects.Load(), prepares.Load(), releases.Load())
	}

	var pid1, pid2 int
	refuseRelease.Store(true)
	if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	refuseRelease.Store(false)
	// The pool closes the refused connection when it replaces it.
	waitFor(t, "BeforeClose runs on the connection AfterRelease refused", func() bool { return closes.Load() >= 1 })
	for range 10 {
		if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
			t.Fatal(err)
		}
		if pid2 == pid1 {
			t.Fatalf("session %d, refused by AfterRelease, served again", pid1)
		}
	}

	refusePrepare.Store(true)
	if err := p.Ping(ctx); err == nil || err.Error() != "refused" {
		t.Errorf("Ping with PrepareConn refusing: %v, want its error", err)
	}
	refusePrepare.Store(false)
	before := closes.Load()
	p.Close()
	if closes.Load() == before {
		t.Error("Close closed no connection through BeforeClose")
	}
	noSessionsLeft(t, "qorbpgx_hooks")
}

// TestParseConfig: the driver's DSN forms and pgx's keyword/value form
// are taken, with qorb's parameters; other schemes and bad values are
// refused naming the parameter, without the password.
func TestParseConfig(t *testing.T) {
	for _, s := range []string{
		"postgres://app:secret@h1:5432,h2/db?pool_max_conns=7&target_session_attrs=read-write",
		"postgresql+srv://app:secret@db.example/db?replica_srv=replicas.example&pool_max_lag=2s",
		"host=h1,h2 user=app password=secret dbname=db pool_max_conns=7 target_session_attrs=read-only",
	} {
		cfg, err := qorbpgx.ParseConfig(s)
		if err != nil {
			t.Errorf("ParseConfig(%q): %v", s, err)
			continue
		}
		if cfg.Opener == nil || cfg.Resolver == nil {
			t.Errorf("ParseConfig(%q): no Opener or Resolver", s)
		}
	}
	cfg := must(qorbpgx.ParseConfig("host=h1,h2 user=app dbname=db pool_max_conns=7 target_session_attrs=read-only"))
	if cfg.Settings.Policy.MaxSlots != 7 || cfg.Settings.DefaultRole != qorb.RoleReplica {
		t.Errorf("keyword/value settings: max %d, role %v", cfg.Settings.Policy.MaxSlots, cfg.Settings.DefaultRole)
	}
	for _, s := range []string{
		"mysql://app:secret@h1/db",
		"postgres://app:secret@h1/db?pool_max_conns=zero",
		"host=h1 password=secret pool_max_lag=-1s",
	} {
		_, err := qorbpgx.ParseConfig(s)
		if !errors.Is(err, qorb.ErrBadDSN) {
			t.Errorf("ParseConfig(%q) = %v, want ErrBadDSN", s, err)
		} else if msg := err.Error(); strings.Contains(msg, "secret") {
			t.Errorf("ParseConfig(%q) error shows the password: %s", s, msg)
		}
	}
}

// TestCredentials: connections opened with qorb.Config.Credentials are
// the Pool's too, and log in as the function says.
func TestCredentials(t *testing.T) {
	needServer(t)
	cfg := parse(t, "postgres://nobody@"+serverAddr+"/test?sslmode=disable&pool_max_conns=2")
	var calls atomic.Int32
	cfg.Credentials = func(context.Context, resolver.Backend) (qorb.Credentials, error) {
		calls.Add(1)
		return qorb.Credentials{User: "postgres"}, nil
	}
	p := newPool(t, cfg)
	var user string
	if err := p.QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil || user != "postgres" {
		t.Fatalf("current_user = %q, %v; want postgres", user, err)
	}
	if calls.Load() == 0 {
		t.Error("the credentials function was not called")
	}
}

// TestRepeatableRead: a read whose connection the server ended while it
// sat idle fails, unless it is safe to repeat (qorb.Repeatable or a
// replica role), when it runs again on a fresh connection.
func TestRepeatableRead(t *testing.T) {
	needServer(t)
	const app = "qorbpgx_repeat"
	p := newPool(t, parse(t, dsn(app, "&pool_max_conns=2&pool_spares=-1&pool_health_check_period=1h&pool_backoff_min=5ms&pool_backoff_max=20ms&pool_connect_rate=-1")))
	ctx := t.Context()
	terminate := func() {
		t.Helper()
		// Each is held, so the pool has two sessions for the server to end.
		a, errA := p.Acquire(ctx)
		b, errB := p.Acquire(ctx)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		a.Release()
		b.Release()
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable", serverAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the server ends the pool's sessions", func() bool { return sessions(t, app) == 0 })
	}
	var n int
	terminate()
	if err := p.QueryRow(ctx, "SELECT 1").Scan(&n); err == nil {
		t.Error("a read on a connection the server ended succeeded without being repeatable: the test proves nothing")
	}
	for _, ctx := range []context.Context{qorb.Repeatable(ctx), qorb.WithRole(ctx, qorb.RolePreferReplica)} {
		terminate()
		if err := p.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Errorf("a repeatable read on a connection the server ended: %v, want it run again", err)
		}
		terminate()
		rows, err := p.Query(ctx, "SELECT g FROM generate_series(1, 3) g")
		if err != nil {
			t.Fatalf("a repeatable Query on a connection the server ended: %v, want it run again", err)
		}
		if got, err := pgx.CollectRows(rows, pgx.RowTo[int]); err != nil || len(got) != 3 {
			t.Errorf("rows %v, %v", got, err)
		}
	}
}

// TestObserverAndStatsPage: the pool's events reach Policy.Observer, and
// statshttp serves the Pool's stats.
func TestObserverAndStatsPage(t *testing.T) {
	needServer(t)
	cfg := parse(t, dsn("qorbpgx_events", "&pool_max_conns=2"))
	var claims, releases atomic.Int32
	cfg.Settings.Policy.Observer = pool.ObserverFunc(func(e pool.Event) {
		switch e.Kind {
		case pool.EventClaim:
			claims.Add(1)
		case pool.EventRelease:
			releases.Add(1)
		}
	})
	p := newPool(t, cfg)
	for range 5 {
		if err := p.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if claims.Load() != 5 || releases.Load() != 5 {
		t.Errorf("%d claim and %d release events for 5 pings, want 5 and 5", claims.Load(), releases.Load())
	}
	rec := httptest.NewRecorder()
	statshttp.Handler(p).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?format=json", nil))
	var snap statshttp.Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &snap); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("stats page: %d, %v", rec.Code, err)
	}
	if len(snap.Backends) != 1 {
		t.Errorf("stats page lists %d backends, want 1", len(snap.Backends))
	}
}
