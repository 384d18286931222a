package pgdialect

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/resolver"
)

// The machine's own PostgreSQL server (scripts/setup starts it): trust
// authentication for postgres, database test.
const (
	serverAddr = "127.0.0.1:5432"
	serverUser = "postgres"
	serverDB   = "test"
)

var local = resolver.Backend{Host: "127.0.0.1", Addr: serverAddr}

// needServer fails the test when the local server does not answer: the
// test command starts it (scripts/setup), so its absence is a failure. In
// -short mode the test is skipped instead.
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

func testOpener(t *testing.T, params url.Values) *Opener {
	t.Helper()
	if params == nil {
		params = url.Values{"sslmode": {"disable"}}
	}
	o, err := NewOpener(qorb.DriverConfig{User: serverUser, Database: serverDB, Params: params})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// connect opens a connection through o and closes it when the test ends.
func connect(t *testing.T, o *Opener, b resolver.Backend) *stdlib.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dc, err := o.Connect(ctx, b)
	if err != nil {
		t.Fatalf("Connect(%v): %v", b, err)
	}
	t.Cleanup(func() { dc.Close() })
	return dc.(*stdlib.Conn)
}

func exec(t *testing.T, c *stdlib.Conn, query string) {
	t.Helper()
	if _, err := c.Conn().Exec(t.Context(), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func queryString(t *testing.T, c *stdlib.Conn, query string, args ...any) string {
	t.Helper()
	var s string
	if err := c.Conn().QueryRow(t.Context(), query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func TestServerOpener(t *testing.T) {
	needServer(t)
	for _, mode := range []string{"disable", "prefer"} {
		t.Run("sslmode="+mode, func(t *testing.T) {
			o := testOpener(t, url.Values{"sslmode": {mode}, "application_name": {"qorb-test"}})
			c := connect(t, o, local)
			ctx := t.Context()
			if err := o.Ping(ctx, c); err != nil {
				t.Errorf("Ping: %v", err)
			}
			role, err := o.Role(ctx, c)
			if err != nil || role != resolver.RolePrimary {
				t.Errorf("Role = %v, %v; want primary", role, err)
			}
			if got := queryString(t, c, "SELECT current_user || '/' || current_database() || '/' || current_setting('application_name')"); got != "postgres/test/qorb-test" {
				t.Errorf("user/database/application_name = %q", got)
			}
			if err := o.Recycle(ctx, c, false); err != nil {
				t.Errorf("Recycle(clean) = %v", err)
			}
		})
	}
}

func TestServerRecycle(t *testing.T) {
	needServer(t)
	o := testOpener(t, nil)
	c := connect(t, o, local)
	ctx := t.Context()

	// Without a reset Recycle does no I/O: a cancelled context is no
	// obstacle.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := o.Recycle(done, c, false); err != nil {
		t.Errorf("Recycle(clean, cancelled ctx) = %v, want nil", err)
	}

	exec(t, c, "BEGIN")
	if err := o.Recycle(ctx, c, false); !errors.Is(err, ErrInTransaction) {
		t.Errorf("Recycle(after BEGIN) = %v, want ErrInTransaction", err)
	}
	if _, err := c.Conn().Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("SELECT 1/0 succeeded")
	}
	if err := o.Recycle(ctx, c, false); !errors.Is(err, ErrInTransaction) {
		t.Errorf("Recycle(in a failed transaction) = %v, want ErrInTransaction", err)
	}
	exec(t, c, "ROLLBACK")
	if err := o.Recycle(ctx, c, false); err != nil {
		t.Errorf("Recycle(after ROLLBACK) = %v, want nil", err)
	}

	rows, err := c.QueryContext(ctx, "SELECT generate_series(1, 1000)", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Recycle(ctx, c, false); !errors.Is(err, ErrBusy) {
		t.Errorf("Recycle(rows not read) = %v, want ErrBusy", err)
	}
	rows.Close()
	if err := o.Recycle(ctx, c, false); err != nil {
		t.Errorf("Recycle(rows closed) = %v, want nil", err)
	}

	c.Close()
	if err := o.Recycle(ctx, c, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Recycle(closed) = %v, want ErrClosed", err)
	}
	if err := o.Ping(ctx, c); err == nil {
		t.Error("Ping(closed) = nil, want an error")
	}
}

func TestServerReset(t *testing.T) {
	needServer(t)
	o := testOpener(t, url.Values{"sslmode": {"disable"}, "application_name": {"from-dsn"}})
	c := connect(t, o, local)
	ctx := t.Context()

	// Dirty the session in every way DISCARD ALL undoes, and have pgx
	// prepare and cache a statement.
	exec(t, c, "SET application_name = 'dirty'")
	exec(t, c, "SET search_path = pg_catalog")
	exec(t, c, "CREATE TEMPORARY TABLE scratch (x int)")
	exec(t, c, "SELECT pg_advisory_lock(4242)")
	exec(t, c, "LISTEN qorb_reset")
	if got := queryString(t, c, "SELECT $1::text", "cached"); got != "cached" {
		t.Fatalf("cached statement = %q", got)
	}

	if err := o.Recycle(ctx, c, true); err != nil {
		t.Fatalf("Recycle = %v", err)
	}

	// The DSN's run-time parameter is the session default, and stays.
	if got := queryString(t, c, "SELECT current_setting('application_name')"); got != "from-dsn" {
		t.Errorf("application_name after reset = %q, want from-dsn", got)
	}
	if got := queryString(t, c, "SELECT current_setting('search_path')"); got == "pg_catalog" {
		t.Errorf("search_path after reset = %q", got)
	}
	if got := queryString(t, c, "SELECT coalesce(to_regclass('pg_temp.scratch')::text, 'gone')"); got != "gone" {
		t.Errorf("temporary table after reset: %q", got)
	}
	if got := queryString(t, c, "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"); got != "0" {
		t.Errorf("advisory locks after reset: %s", got)
	}
	if got := queryString(t, c, "SELECT count(*)::text FROM pg_listening_channels()"); got != "0" {
		t.Errorf("channels listened to after reset: %s", got)
	}
	// pgx forgot the statement the server forgot: running it again
	// prepares it again instead of failing.
	if got := queryString(t, c, "SELECT $1::text", "again"); got != "again" {
		t.Errorf("cached statement after reset = %q", got)
	}

	// A connection inside a transaction is refused, not reset.
	exec(t, c, "BEGIN")
	exec(t, c, "SET LOCAL application_name = 'in-tx'")
	if err := o.Recycle(ctx, c, true); !errors.Is(err, ErrInTransaction) {
		t.Errorf("Recycle(in a transaction) = %v, want ErrInTransaction", err)
	}
	if got := queryString(t, c, "SELECT current_setting('application_name')"); got != "in-tx" {
		t.Errorf("the refused connection was touched: application_name = %q", got)
	}
}

// TestServerDiscardNeedsDeallocate shows why Recycle makes pgx forget its
// statements after DISCARD ALL: without that, pgx's statement cache names
// statements the server no longer has.
func TestServerDiscardNeedsDeallocate(t *testing.T) {
	needServer(t)
	c := connect(t, testOpener(t, nil), local)
	queryString(t, c, "SELECT $1::text", "cached")
	exec(t, c, "DISCARD ALL")
	var s string
	err := c.Conn().QueryRow(t.Context(), "SELECT $1::text", "cached").Scan(&s)
	if err == nil {
		t.Skip("this pgx version recovers from DISCARD ALL by itself")
	}
	t.Logf("without DeallocateAll: %v", err)
}

func TestServerIPv6(t *testing.T) {
	needServer(t)
	addr := loopback.Proxy(t, "::1", serverAddr)
	o := testOpener(t, nil)
	c := connect(t, o, resolver.Backend{Host: "::1", Addr: addr})
	if err := o.Ping(t.Context(), c); err != nil {
		t.Errorf("Ping over %s: %v", addr, err)
	}
}

// TestConnectBoundedByContext: a server that accepts connections and never
// answers (a stopped one) holds a connection attempt no longer than its
// context.
func TestConnectBoundedByContext(t *testing.T) {
	addr := loopback.Silent(t)
	for _, mode := range []string{"disable", "prefer"} {
		t.Run("sslmode="+mode, func(t *testing.T) {
			o := testOpener(t, url.Values{"sslmode": {mode}})
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			c, err := o.Connect(ctx, resolver.Backend{Host: "db.example", Addr: addr})
			elapsed := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Connect to a silent server succeeded")
			}
			t.Logf("Connect returned after %v: %v", elapsed.Round(time.Millisecond), err)
			if elapsed > 3*time.Second {
				t.Errorf("Connect took %v with a 200ms context", elapsed)
			}
		})
	}
}

func TestServerSQLOpen(t *testing.T) {
	needServer(t)
	leaks := goroutines(t)
	db, err := sql.Open("qorb", "postgres://"+serverUser+"@"+serverAddr+"/"+serverDB+
		"?sslmode=disable&application_name=qorb-e2e&pool_max_conns=4&target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		var dbname, app string
		var n int
		err := db.QueryRowContext(ctx, "SELECT current_database(), current_setting('application_name'), $1::int", i).Scan(&dbname, &app, &n)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if dbname != serverDB || app != "qorb-e2e" || n != i {
			t.Fatalf("query %d = %q, %q, %d", i, dbname, app, n)
		}
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	leaks()
	noSessions(t, "qorb-e2e")
}

func TestServerNewConnector(t *testing.T) {
	needServer(t)
	v6 := loopback.Proxy(t, "::1", serverAddr)
	for _, dsn := range []string{
		"host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable application_name=qorb-kv pool_max_conns=2 target_session_attrs=primary",
		"postgres://postgres@127.0.0.1:5432,[::1]:" + port(t, v6) + "/test?sslmode=prefer&application_name=qorb-url&pool_max_conns=3&pool_reset_session=true",
	} {
		t.Run(dsn, func(t *testing.T) {
			leaks := goroutines(t)
			c, err := NewConnector(dsn)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for i := range 20 {
				var app string
				if err := db.QueryRowContext(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if app != "qorb-kv" && app != "qorb-url" {
					t.Fatalf("application_name = %q", app)
				}
			}
			waitConnected(t, c)
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			leaks()
			noSessions(t, "qorb-kv")
			noSessions(t, "qorb-url")
		})
	}
}

// waitConnected waits until every backend of c has a connection open, and
// fails the test if a connection attempt failed.
func waitConnected(t *testing.T, c *qorb.Connector) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := c.Stats()
		ready := len(st.Backends) > 0
		for _, b := range st.Backends {
			if b.Failures > 0 {
				t.Fatalf("backend %v: %d failures, last: %s", b.Backend, b.Failures, b.LastError)
			}
			if b.Idle+b.Claimed+b.Checking+b.Recycling == 0 {
				ready = false
			}
		}
		if ready {
			for _, b := range st.Backends {
				t.Logf("backend %v: %d claims, %d slots", b.Backend, b.Claims, b.Slots())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends not all connected after 10s: %+v", st.Backends)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutines takes a goroutine count, and returns a function that waits
// until the count is back to it.
func goroutines(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// noSessions waits until the server has no session with the application
// name app.
func noSessions(t *testing.T, app string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for {
		var n int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
		if err != nil {
			t.Fatalf("counting sessions: %v", err)
		}
		if n == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d sessions of %s left after Close", n, app)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
