package mysqldialect

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/resolver"
)

// The machine's own MariaDB server (scripts/setup starts it): root with
// an empty password, database test.
const (
	serverAddr = "127.0.0.1:3306"
	serverUser = "root"
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
			t.Skipf("no MariaDB server at %s: %v", serverAddr, err)
		}
		t.Fatalf("no MariaDB server at %s (scripts/setup starts it): %v", serverAddr, err)
	}
	c.Close()
}

func testOpener(t *testing.T, params url.Values) *Opener {
	t.Helper()
	o, err := NewOpener(qorb.DriverConfig{User: serverUser, Database: serverDB, Params: params})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// connect opens a connection through o and closes it when the test ends.
func connect(t *testing.T, o *Opener, b resolver.Backend) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := o.Connect(ctx, b)
	if err != nil {
		t.Fatalf("Connect(%v): %v", b, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func exec(t *testing.T, c driver.Conn, query string) {
	t.Helper()
	if err := execute(t.Context(), c, query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// value runs query on c and returns its first column as text ("NULL" for
// NULL).
func value(t *testing.T, c driver.Conn, query string) string {
	t.Helper()
	row, err := queryRow(t.Context(), c, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	switch v := row[0].(type) {
	case nil:
		return "NULL"
	case []byte:
		return string(v)
	default:
		return fmt.Sprint(v)
	}
}

func TestServerOpener(t *testing.T) {
	needServer(t)
	o := testOpener(t, url.Values{"time_zone": {"'+02:00'"}})
	c := connect(t, o, local)
	ctx := t.Context()
	if err := o.Ping(ctx, c); err != nil {
		t.Errorf("Ping: %v", err)
	}
	role, err := o.Role(ctx, c)
	if err != nil || role != resolver.RolePrimary {
		t.Errorf("Role = %v, %v; want primary", role, err)
	}
	if got := value(t, c, "SELECT CONCAT(DATABASE(), '/', @@session.time_zone)"); got != "test/+02:00" {
		t.Errorf("database/time_zone = %q", got)
	}
	if err := o.Recycle(ctx, c, false); err != nil {
		t.Errorf("Recycle(clean) = %v", err)
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

	rows, err := c.(driver.QueryerContext).QueryContext(ctx, "SELECT seq FROM seq_1_to_1000", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Recycle(ctx, c, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("Recycle(rows not read) = %v, want ErrInvalid", err)
	}
	rows.Close()
	if err := o.Recycle(ctx, c, false); err != nil {
		t.Errorf("Recycle(rows closed) = %v, want nil", err)
	}

	c.Close()
	if err := o.Recycle(ctx, c, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("Recycle(closed) = %v, want ErrInvalid", err)
	}
}

// TestServerReset shows what pool_reset_session does on MariaDB, and what
// it leaves as it was (see the package documentation).
func TestServerReset(t *testing.T) {
	needServer(t)
	admin := connect(t, testOpener(t, nil), local)
	exec(t, admin, "CREATE TABLE IF NOT EXISTS qorb_reset (x int)")
	exec(t, admin, "CREATE TABLE IF NOT EXISTS qorb_other (x int)")
	t.Cleanup(func() {
		execute(context.Background(), admin, "DROP TABLE IF EXISTS qorb_reset, qorb_other")
	})
	for _, stepwise := range []bool{false, true} {
		t.Run(fmt.Sprintf("stepwise=%v", stepwise), func(t *testing.T) {
			o := testOpener(t, nil)
			o.stepwise.Store(stepwise)
			c := connect(t, o, local)
			ctx := t.Context()

			exec(t, c, "BEGIN")
			exec(t, c, "INSERT INTO qorb_reset VALUES (1)")
			if err := o.Recycle(ctx, c, true); !errors.Is(err, ErrInTransaction) {
				t.Errorf("Recycle(after BEGIN) = %v, want ErrInTransaction", err)
			}
			exec(t, c, "ROLLBACK")

			exec(t, c, "SET @kept = 'user variable'")
			exec(t, c, "CREATE TEMPORARY TABLE qorb_scratch (x int)")
			exec(t, c, "SET SESSION sql_mode = 'ANSI'")
			if got := value(t, c, "SELECT GET_LOCK('qorb_named_lock', 0)"); got != "1" {
				t.Fatalf("GET_LOCK = %s", got)
			}
			exec(t, c, "LOCK TABLES qorb_reset READ")

			if err := o.Recycle(ctx, c, true); err != nil {
				t.Fatalf("Recycle = %v", err)
			}
			if o.stepwise.Load() != stepwise {
				t.Errorf("stepwise = %v after a reset on MariaDB %s", o.stepwise.Load(), value(t, c, "SELECT VERSION()"))
			}

			// Released: the named lock and the table lock.
			if got := value(t, admin, "SELECT IS_USED_LOCK('qorb_named_lock')"); got != "NULL" {
				t.Errorf("named lock still held by connection %s", got)
			}
			exec(t, c, "SELECT COUNT(*) FROM qorb_other") // fails while LOCK TABLES holds only qorb_reset
			// Kept: user variables, temporary tables, session variables.
			if got := value(t, c, "SELECT @kept"); got != "user variable" {
				t.Errorf("@kept = %q; the documentation says user variables survive", got)
			}
			exec(t, c, "SELECT COUNT(*) FROM qorb_scratch")
			if got := value(t, c, "SELECT @@session.sql_mode"); !strings.Contains(got, "ANSI") {
				t.Errorf("sql_mode = %q; the documentation says session variables survive", got)
			}
			exec(t, c, "USE information_schema")
			if err := o.Recycle(ctx, c, true); err != nil {
				t.Fatalf("Recycle = %v", err)
			}
			if got := value(t, c, "SELECT DATABASE()"); got != "information_schema" {
				t.Errorf("database = %q; the documentation says USE survives", got)
			}
		})
	}
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
	for _, tls := range []string{"false", "true"} {
		t.Run("tls="+tls, func(t *testing.T) {
			o := testOpener(t, url.Values{"tls": {tls}})
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
	db, err := sql.Open("qorb", "mysql://"+serverUser+"@"+serverAddr+"/"+serverDB+
		"?parseTime=true&time_zone=%27%2B03%3A00%27&pool_max_conns=4&target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	ids := queries(t, db, "+03:00")
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	leaks()
	noSessions(t, ids)
}

func TestServerNewConnector(t *testing.T) {
	needServer(t)
	v6 := loopback.Proxy(t, "::1", serverAddr)
	for _, dsn := range []string{
		"root@tcp(127.0.0.1:3306)/test?parseTime=true&time_zone=%27%2B04%3A00%27&pool_max_conns=2&target_session_attrs=primary",
		"root:@tcp(127.0.0.1:3306," + v6 + ")/test?time_zone=%27%2B04%3A00%27&pool_max_conns=3&pool_reset_session=true",
	} {
		t.Run(dsn, func(t *testing.T) {
			leaks := goroutines(t)
			c, err := NewConnector(dsn)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			ids := queries(t, db, "+04:00")
			waitConnected(t, c)
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			leaks()
			noSessions(t, ids)
		})
	}
}

// queries runs queries through db, checks the session's time zone, and
// returns the connection IDs that served them.
func queries(t *testing.T, db *sql.DB, tz string) map[int64]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ids := map[int64]bool{}
	for i := range 20 {
		var id, n int64
		var zone string
		if err := db.QueryRowContext(ctx, "SELECT CONNECTION_ID(), @@session.time_zone, ?", i).Scan(&id, &zone, &n); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if zone != tz || n != int64(i) {
			t.Fatalf("query %d = %q, %d", i, zone, n)
		}
		ids[id] = true
	}
	return ids
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

// noSessions waits until none of the connections ids is left on the
// server.
func noSessions(t *testing.T, ids map[int64]bool) {
	t.Helper()
	c := connect(t, testOpener(t, nil), local)
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for id := range ids {
			if value(t, c, fmt.Sprintf("SELECT COUNT(*) FROM information_schema.processlist WHERE id = %d", id)) != "0" {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of our %d sessions left after Close", left, len(ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
