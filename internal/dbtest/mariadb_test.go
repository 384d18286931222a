package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestStartMariaDB(t *testing.T) {
	start := time.Now()
	ms := StartMariaDB(t, 3)
	t.Logf("3 MariaDB servers in %v", time.Since(start))
	seen := map[int]bool{}
	for _, m := range ms {
		db := openDB(t, "mysql", m.DSN())
		if got := queryInt(t, db, "SELECT @@port"); got != m.Port() {
			t.Errorf("%s: @@port = %d, want %d", m.Name(), got, m.Port())
		}
		execAll(t, db, "CREATE TABLE t (i int)", "INSERT INTO t VALUES (1)")
		// The test user's grants stop at its database.
		if _, err := db.Exec("CREATE DATABASE other"); err == nil {
			t.Errorf("%s: CREATE DATABASE as %s succeeded, want access denied", m.Name(), User)
		}
		if m.ReadOnly(t) {
			t.Errorf("%s: ReadOnly() = true, want false", m.Name())
		}
		seen[m.Port()] = true
	}
	if len(seen) != 3 {
		t.Errorf("ports %v, want 3 distinct", seen)
	}
}

func TestMariaDBLifecycle(t *testing.T) {
	m := StartMariaDB(t, 1)[0]
	db := openDB(t, "mysql", m.DSN()+"?timeout=5s")
	execAll(t, db, "CREATE TABLE t (i int)", "INSERT INTO t VALUES (1)")
	port := m.Port()

	t.Run("KillStart", func(t *testing.T) {
		m.Kill(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err == nil {
			t.Errorf("Ping after Kill: nil error, want one")
		}
		m.Start(t)
		if got := queryInt(t, db, "SELECT @@port"); got != port {
			t.Errorf("@@port = %d after restart, want %d", got, port)
		}
		// innodb_flush_log_at_trx_commit=2: the insert survived the crash.
		if got := queryInt(t, db, "SELECT count(*) FROM t"); got != 1 {
			t.Errorf("rows after crash = %d, want 1", got)
		}
	})

	t.Run("Restart", func(t *testing.T) {
		m.Restart(t)
		if got := queryInt(t, db, "SELECT count(*) FROM t"); got != 1 {
			t.Errorf("rows after restart = %d, want 1", got)
		}
	})

	t.Run("PauseResume", func(t *testing.T) {
		m.Pause(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var n int
		err := db.QueryRowContext(ctx, "SELECT 1").Scan(&n)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("query on paused server: %v, want %v", err, context.DeadlineExceeded)
		}
		m.Resume(t)
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
		if got := m.Sessions(t, User); got < 3 {
			t.Errorf("Sessions(%q) = %d, want ≥ 3", User, got)
		}
		for _, c := range conns {
			c.Close()
		}
		db.SetMaxIdleConns(0) // closes the idle ones
		if err := poll(10*time.Second, "sessions to end", func() (bool, error) {
			return m.Sessions(t, User) == 0, nil
		}); err != nil {
			t.Error(err)
		}
	})

	t.Run("TerminateSessions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		if got := m.TerminateSessions(t, User); got != 1 {
			t.Errorf("TerminateSessions = %d, want 1", got)
		}
		if err := c.PingContext(ctx); err == nil {
			t.Errorf("Ping on a killed session: nil error, want one")
		}
	})
}

func TestMariaDBCluster(t *testing.T) {
	start := time.Now()
	c := StartMariaDBCluster(t, 2)
	t.Logf("MariaDB primary + 2 replicas in %v", time.Since(start))

	dbs := map[*MariaDB]*sql.DB{}
	for i, s := range c.Servers() {
		dbs[s] = openDB(t, "mysql", s.DSN())
		if got, want := s.ReadOnly(t), i > 0; got != want {
			t.Errorf("%s: ReadOnly() = %v, want %v", s.Name(), got, want)
		}
	}
	execAll(t, dbs[c.Primary], "CREATE TABLE r (i int)", "INSERT INTO r VALUES (1)")
	c.WaitReplicated(t)
	for _, s := range c.Replicas {
		if got := queryInt(t, dbs[s], "SELECT count(*) FROM r"); got != 1 {
			t.Errorf("%s: rows = %d, want 1", s.Name(), got)
		}
		_, err := dbs[s].Exec("INSERT INTO r VALUES (2)")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1290 {
			t.Errorf("%s: insert on a replica: %v, want error 1290 (read-only)", s.Name(), err)
		}
	}

	t.Run("PauseReplay", func(t *testing.T) {
		lagging, other := c.Replicas[0], c.Replicas[1]
		lagging.PauseReplay(t)
		before := lagging.GTIDPosition(t)
		execAll(t, dbs[c.Primary], "INSERT INTO r VALUES (2)")
		pos := c.Primary.GTIDPosition(t)
		other.WaitGTID(t, pos)
		c.WaitReplicated(t) // skips the paused replica
		if got := queryInt(t, dbs[other], "SELECT count(*) FROM r"); got != 2 {
			t.Errorf("%s: rows = %d, want 2", other.Name(), got)
		}
		if got := queryInt(t, dbs[lagging], "SELECT count(*) FROM r"); got != 1 {
			t.Errorf("paused %s: rows = %d, want 1", lagging.Name(), got)
		}
		if at := lagging.GTIDPosition(t); at != before || GTIDReached(at, pos) {
			t.Errorf("paused %s: GTIDPosition() = %q, want %q (before primary's %q)", lagging.Name(), at, before, pos)
		}
		lagging.ResumeReplay(t)
		lagging.WaitGTID(t, pos)
		if got := queryInt(t, dbs[lagging], "SELECT count(*) FROM r"); got != 2 {
			t.Errorf("resumed %s: rows = %d, want 2", lagging.Name(), got)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		old, to, other := c.Primary, c.Replicas[0], c.Replicas[1]
		other.PauseReplay(t) // Failover must still bring it along
		execAll(t, dbs[old], "INSERT INTO r VALUES (3)")
		start := time.Now()
		c.Failover(t, to)
		t.Logf("failover in %v", time.Since(start))
		if c.Primary != to || len(c.Replicas) != 1 || c.Replicas[0] != other {
			t.Fatalf("after Failover: primary %s, replicas %v", c.Primary.Name(), c.Replicas)
		}
		if old.Running() {
			t.Errorf("old primary %s still running", old.Name())
		}
		if to.ReadOnly(t) || !other.ReadOnly(t) {
			t.Errorf("read_only: new primary %v, replica %v; want false, true", to.ReadOnly(t), other.ReadOnly(t))
		}
		execAll(t, dbs[to], "INSERT INTO r VALUES (4)")
		c.WaitReplicated(t)
		if got := queryInt(t, dbs[other], "SELECT count(*) FROM r"); got != 4 {
			t.Errorf("%s following %s: rows = %d, want 4", other.Name(), to.Name(), got)
		}
		to.Restart(t) // stays writable
		execAll(t, dbs[to], "INSERT INTO r VALUES (5)")
		added := c.AddReplica(t)
		c.WaitReplicated(t)
		if got := queryInt(t, openDB(t, "mysql", added.DSN()), "SELECT count(*) FROM r"); got != 5 {
			t.Errorf("new replica %s: rows = %d, want 5", added.Name(), got)
		}
	})
}

func TestGTIDReached(t *testing.T) {
	tests := []struct {
		have, want string
		reached    bool
	}{
		{"", "", true},
		{"0-1-5", "", true},
		{"0-1-5", "0-1-5", true},
		{"0-2-7", "0-1-5", true},
		{"0-1-4", "0-1-5", false},
		{"", "0-1-1", false},
		{"0-1-9,1-3-2", "1-3-2", true},
		{"0-1-9", "0-1-1,1-3-2", false},
		{"garbage", "0-1-1", false},
	}
	for _, tt := range tests {
		if got := GTIDReached(tt.have, tt.want); got != tt.reached {
			t.Errorf("GTIDReached(%q, %q) = %v, want %v", tt.have, tt.want, got, tt.reached)
		}
	}
}
