package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

func TestMain(m *testing.M) { Main(m) }

// openDB opens a pool of driverName on dsn, closed when the test ends.
func openDB(t *testing.T, driverName, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// execAll runs statements, failing the test on the first error.
func execAll(t *testing.T, db *sql.DB, queries ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, q := range queries {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestStartPostgres(t *testing.T) {
	start := time.Now()
	pgs := StartPostgres(t, 3)
	t.Logf("3 PostgreSQL servers in %v", time.Since(start))
	seen := map[int]bool{}
	for _, p := range pgs {
		for _, dsn := range []string{p.DSN(), p.URL()} {
			db := openDB(t, "pgx", dsn)
			if got := queryInt(t, db, "SELECT inet_server_port()"); got != p.Port() {
				t.Errorf("%s: inet_server_port() = %d, want %d", p.Name(), got, p.Port())
			}
		}
		if want := "127.0.0.1:"; !strings.HasPrefix(p.Addr(), want) {
			t.Errorf("%s: Addr() = %q, want prefix %q", p.Name(), p.Addr(), want)
		}
		seen[p.Port()] = true
	}
	if len(seen) != 3 {
		t.Errorf("ports %v, want 3 distinct", seen)
	}
}

func TestPostgresLifecycle(t *testing.T) {
	p := StartPostgres(t, 1)[0]
	db := openDB(t, "pgx", p.DSN()+" application_name=dbtest-lifecycle connect_timeout=5")
	execAll(t, db, "CREATE TABLE t (i int)", "INSERT INTO t VALUES (1)")
	port := p.Port()

	t.Run("KillStart", func(t *testing.T) {
		p.Kill(t)
		if p.Running() {
			t.Errorf("Running() = true after Kill")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err == nil {
			t.Errorf("Ping after Kill: nil error, want one")
		}
		p.Start(t)
		if p.Port() != port {
			t.Errorf("Port() = %d after restart, want %d", p.Port(), port)
		}
		// synchronous_commit is on: the acknowledged insert survived the crash.
		if got := queryInt(t, db, "SELECT count(*) FROM t"); got != 1 {
			t.Errorf("rows after crash = %d, want 1", got)
		}
	})

	t.Run("Restart", func(t *testing.T) {
		pid := p.PID()
		p.Restart(t)
		if p.PID() == pid || p.PID() == 0 {
			t.Errorf("PID() = %d after Restart, was %d", p.PID(), pid)
		}
		if got := queryInt(t, db, "SELECT inet_server_port()"); got != port {
			t.Errorf("inet_server_port() = %d, want %d", got, port)
		}
	})

	t.Run("PauseResume", func(t *testing.T) {
		p.Pause(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var n int
		err := db.QueryRowContext(ctx, "SELECT 1").Scan(&n)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("query on paused server: %v, want %v", err, context.DeadlineExceeded)
		}
		p.Resume(t)
		if got := queryInt(t, db, "SELECT 1"); got != 1 {
			t.Errorf("SELECT 1 = %d after Resume", got)
		}
	})

	t.Run("Sessions", func(t *testing.T) {
		db.SetMaxIdleConns(10)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var conns []*sql.Conn
		for range 3 {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		if got := p.AppSessions(t, "dbtest-lifecycle"); got != 3 {
			t.Errorf("AppSessions = %d, want 3", got)
		}
		if got := p.Sessions(t, User); got != 3 {
			t.Errorf("Sessions(%q) = %d, want 3", User, got)
		}
		for _, c := range conns {
			c.Close()
		}
		if got := p.TerminateSessions(t, User); got != 3 {
			t.Errorf("TerminateSessions = %d, want 3", got)
		}
		if err := poll(10*time.Second, "sessions to end", func() (bool, error) {
			return p.Sessions(t, User) == 0, nil
		}); err != nil {
			t.Error(err)
		}
	})
}

func TestPostgresCluster(t *testing.T) {
	start := time.Now()
	c := StartPostgresCluster(t, 2)
	t.Logf("PostgreSQL primary + 2 standbys in %v", time.Since(start))

	dbs := map[*Postgres]*sql.DB{}
	for _, s := range c.Servers() {
		dbs[s] = openDB(t, "pgx", s.DSN())
	}
	for i, s := range c.Servers() {
		if got, want := s.InRecovery(t), i > 0; got != want {
			t.Errorf("%s: InRecovery() = %v, want %v", s.Name(), got, want)
		}
	}
	execAll(t, dbs[c.Primary], "CREATE TABLE r (i int)", "INSERT INTO r VALUES (1)")
	c.WaitReplicated(t)
	for _, s := range c.Standbys {
		if got := queryInt(t, dbs[s], "SELECT count(*) FROM r"); got != 1 {
			t.Errorf("%s: rows = %d, want 1", s.Name(), got)
		}
		_, err := dbs[s].Exec("INSERT INTO r VALUES (2)")
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("%s: insert on a standby: %v, want a read-only error", s.Name(), err)
		}
	}

	t.Run("PauseReplay", func(t *testing.T) {
		lagging, other := c.Standbys[0], c.Standbys[1]
		lagging.PauseReplay(t)
		before := lagging.WALPosition(t)
		execAll(t, dbs[c.Primary], "INSERT INTO r VALUES (2)")
		lsn := c.Primary.WALPosition(t)
		other.WaitWAL(t, lsn)
		c.WaitReplicated(t) // skips the paused standby
		if got := queryInt(t, dbs[other], "SELECT count(*) FROM r"); got != 2 {
			t.Errorf("%s: rows = %d, want 2", other.Name(), got)
		}
		if got := queryInt(t, dbs[lagging], "SELECT count(*) FROM r"); got != 1 {
			t.Errorf("paused %s: rows = %d, want 1", lagging.Name(), got)
		}
		if at := lagging.WALPosition(t); at != before || at >= lsn {
			t.Errorf("paused %s: WALPosition() = %v, want %v (< primary's %v)", lagging.Name(), at, before, lsn)
		}
		if got := lagging.ReceivedWALPosition(t); got < lsn {
			t.Errorf("paused %s: ReceivedWALPosition() = %v, want ≥ %v", lagging.Name(), got, lsn)
		}
		lagging.ResumeReplay(t)
		lagging.WaitWAL(t, lsn)
		if got := queryInt(t, dbs[lagging], "SELECT count(*) FROM r"); got != 2 {
			t.Errorf("resumed %s: rows = %d, want 2", lagging.Name(), got)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		old, to, other := c.Primary, c.Standbys[0], c.Standbys[1]
		start := time.Now()
		c.Failover(t, to)
		t.Logf("failover in %v", time.Since(start))
		if c.Primary != to || len(c.Standbys) != 1 || c.Standbys[0] != other {
			t.Fatalf("after Failover: primary %s, standbys %v", c.Primary.Name(), c.Standbys)
		}
		if old.Running() {
			t.Errorf("old primary %s still running", old.Name())
		}
		execAll(t, dbs[to], "INSERT INTO r VALUES (3)")
		c.WaitReplicated(t)
		if got := queryInt(t, dbs[other], "SELECT count(*) FROM r"); got != 3 {
			t.Errorf("%s following %s: rows = %d, want 3", other.Name(), to.Name(), got)
		}
		added := c.AddStandby(t)
		c.WaitReplicated(t)
		if got := queryInt(t, openDB(t, "pgx", added.DSN()), "SELECT count(*) FROM r"); got != 3 {
			t.Errorf("new standby %s: rows = %d, want 3", added.Name(), got)
		}
	})
}

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want LSN
		ok   bool
	}{
		{"0/0", 0, true},
		{"0/3000148", 0x3000148, true},
		{"16/B374D848", 0x16_B374D848, true},
		{"", 0, false},
		{"16", 0, false},
		{"x/1", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("ParseLSN(%q).String() = %q", tt.in, got.String())
		}
	}
}
