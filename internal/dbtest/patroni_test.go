package dbtest

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestPatroniCluster starts a three-node Patroni cluster with HAProxy in
// front, checks the roles through both HAProxy ports, crashes the leader's
// PostgreSQL and sees Patroni promote another node by itself and HAProxy
// follow, switches back over through the REST API, and checks that nothing
// of the cluster is left running once its test ends.
func TestPatroniCluster(t *testing.T) {
	if err := HAStackMissing(); err != nil {
		t.Skip(err)
	}
	var dir string
	t.Run("Cluster", func(t *testing.T) {
		start := time.Now()
		c := StartPatroniCluster(t, 3)
		h := StartHAProxy(t, c)
		dir = c.dir
		t.Logf("cluster and HAProxy up in %v", time.Since(start).Round(time.Millisecond))

		leader, err := c.Leader(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkServer := func(dsn string, wantPort int, wantRecovery bool) {
			t.Helper()
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var port int
			var recovery bool
			if err := db.QueryRowContext(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &recovery); err != nil {
				t.Fatalf("%s: %v", dsn, err)
			}
			if (wantPort != 0 && port != wantPort) || recovery != wantRecovery {
				t.Errorf("%s: served by %d (in recovery %v), want %d (in recovery %v)", dsn, port, recovery, wantPort, wantRecovery)
			}
		}
		checkServer(leader.DSN(), leader.Port(), false)
		checkServer(h.PrimaryDSN(), leader.Port(), false)
		checkServer(h.ReplicaDSN(), 0, true)

		leader.KillPostgres(t)
		killedAt := time.Now()
		next := c.WaitLeader(t, leader)
		t.Logf("%s promoted %v after %s's PostgreSQL was killed", next.Name(), time.Since(killedAt).Round(time.Millisecond), leader.Name())
		if got := c.WaitHealthy(t); got != next {
			t.Fatalf("leader after the failover is %s, want %s", got.Name(), next.Name())
		}
		h.WaitRouting(t, next)
		checkServer(h.PrimaryDSN(), next.Port(), false)

		to := c.SyncStandby(t)
		c.Switchover(t, next, to)
		if got := c.WaitLeader(t, next); got != to {
			t.Fatalf("leader after the switchover is %s, want %s", got.Name(), to.Name())
		}
		c.WaitHealthy(t)
		h.WaitRouting(t, to)
		checkServer(h.PrimaryDSN(), to.Port(), false)
	})
	if dir == "" {
		return
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory %s is still there: %v", dir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir+"/")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			t.Errorf("process %d of the cluster is still running: %q", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}
