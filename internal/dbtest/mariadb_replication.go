package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// MariaDBCluster is a MariaDB primary and its GTID replicas, made by
// [StartMariaDBCluster]. Failover changes which server is in which field;
// every server is torn down when the test that started the cluster ends.
type MariaDBCluster struct {
	// Primary is the server that takes writes.
	Primary *MariaDB
	// Replicas replicate from Primary, asynchronously, and run with
	// read_only, so that User cannot write to them.
	Replicas []*MariaDB
}

// StartMariaDBCluster starts a primary and the given number of replicas and
// waits until every replica replicates from the primary.
func StartMariaDBCluster(t testing.TB, replicas int) *MariaDBCluster {
	t.Helper()
	c := &MariaDBCluster{Primary: newMariaDB(t, freePort, false)}
	for range replicas {
		c.AddReplica(t)
	}
	return c
}

// Servers returns the primary followed by the replicas.
func (c *MariaDBCluster) Servers() []*MariaDB {
	return append([]*MariaDB{c.Primary}, c.Replicas...)
}

// AddReplica starts a new, empty server that replicates the primary's whole
// binary log, waits until it replicates, and appends it to Replicas.
func (c *MariaDBCluster) AddReplica(t testing.TB) *MariaDB {
	t.Helper()
	r := newMariaDB(t, freePort, true)
	r.Follow(t, c.Primary)
	c.Replicas = append(c.Replicas, r)
	return r
}

// WaitReplicated waits until every replica has applied the primary's current
// GTID position. Replicas whose SQL thread was stopped (PauseReplay) are
// skipped.
func (c *MariaDBCluster) WaitReplicated(t testing.TB) {
	t.Helper()
	pos := c.Primary.GTIDPosition(t)
	for _, r := range c.Replicas {
		st, err := r.replicaStatus()
		if err != nil {
			t.Fatal(err)
		}
		if st["Slave_SQL_Running"] != "Yes" && st["Last_SQL_Errno"] == "0" {
			continue
		}
		r.WaitGTID(t, pos)
	}
}

// Failover makes to, one of the replicas, the primary: it stops the current primary
// cleanly if it runs, promotes to, and points every other running replica at
// it. Afterwards Primary is to and Replicas holds the others; the former
// primary stays stopped and out of the cluster.
func (c *MariaDBCluster) Failover(t testing.TB, to *MariaDB) {
	t.Helper()
	var rest []*MariaDB
	found := false
	for _, r := range c.Replicas {
		if r == to {
			found = true
		} else {
			rest = append(rest, r)
		}
	}
	if !found {
		t.Fatalf("dbtest: failover to %s, which is not a replica of the cluster", to.Name())
	}
	if c.Primary.Running() {
		c.Primary.Stop(t)
	}
	to.Promote(t)
	for _, r := range rest {
		if r.Running() {
			r.Follow(t, to)
		}
	}
	c.Primary, c.Replicas = to, rest
}

// replicaStatus returns SHOW SLAVE STATUS as a map from column to value, or
// nil if the server is not a replica.
func (m *MariaDB) replicaStatus() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rows, err := m.admin.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, fmt.Errorf("dbtest: %s: SHOW SLAVE STATUS: %w", m.name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		st[c] = vals[i].String
	}
	return st, rows.Close()
}

// GTIDPosition returns the server's @@global.gtid_binlog_pos, such as
// "0-1-42": every transaction it has committed, written or replicated (all
// servers log replicated transactions too).
func (m *MariaDB) GTIDPosition(t testing.TB) string {
	t.Helper()
	var pos string
	m.mustQueryRow(t, "SELECT @@global.gtid_binlog_pos", nil, &pos)
	return pos
}

// WaitGTID waits until the server's GTIDPosition reaches pos in every
// replication domain of pos, for at most 30 seconds.
func (m *MariaDB) WaitGTID(t testing.TB, pos string) {
	t.Helper()
	var at string
	err := poll(waitTimeout, fmt.Sprintf("%s to reach GTID %q", m.name, pos), func() (bool, error) {
		err := m.queryRow(context.Background(), "SELECT @@global.gtid_binlog_pos", nil, &at)
		return err == nil && GTIDReached(at, pos), err
	})
	if err != nil {
		st, _ := m.replicaStatus()
		t.Fatalf("%v (at %q; IO thread %q, SQL thread %q, last errors %q %q)", err, at,
			st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
	}
}

// GTIDReached reports whether GTID position have (as in @@gtid_binlog_pos,
// "domain-server-seqno" joined by commas) includes position want: in each
// domain of want, have's sequence number is at least want's.
func GTIDReached(have, want string) bool {
	h, ok1 := parseGTIDPos(have)
	w, ok2 := parseGTIDPos(want)
	if !ok1 || !ok2 {
		return false
	}
	for domain, seq := range w {
		if h[domain] < seq {
			return false
		}
	}
	return true
}

// parseGTIDPos maps each domain of a GTID position to its sequence number.
func parseGTIDPos(pos string) (map[uint32]uint64, bool) {
	out := make(map[uint32]uint64)
	for _, g := range strings.Split(pos, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		parts := strings.Split(g, "-")
		if len(parts) != 3 {
			return nil, false
		}
		domain, err1 := strconv.ParseUint(parts[0], 10, 32)
		_, err2 := strconv.ParseUint(parts[1], 10, 32)
		seq, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, false
		}
		out[uint32(domain)] = seq
	}
	return out, true
}

// PauseReplay stops the replica's SQL thread (STOP SLAVE SQL_THREAD): it
// keeps receiving the primary's binary log but applies nothing, so it lags
// from then on. ResumeReplay undoes it.
func (m *MariaDB) PauseReplay(t testing.TB) {
	t.Helper()
	m.Exec(t, "STOP SLAVE SQL_THREAD")
}

// ResumeReplay starts the replica's SQL thread again (START SLAVE
// SQL_THREAD).
func (m *MariaDB) ResumeReplay(t testing.TB) {
	t.Helper()
	m.Exec(t, "START SLAVE SQL_THREAD")
}

// Promote makes the replica a primary: it applies everything it has
// received (resuming a paused SQL thread), stops replicating, forgets its
// primary (RESET SLAVE ALL) and turns read_only off, also for later
// restarts.
func (m *MariaDB) Promote(t testing.TB) {
	t.Helper()
	st, err := m.replicaStatus()
	if err != nil {
		t.Fatal(err)
	}
	if st != nil {
		m.Exec(t, "STOP SLAVE IO_THREAD")
		m.Exec(t, "START SLAVE SQL_THREAD")
		if st, err = m.replicaStatus(); err != nil {
			t.Fatal(err)
		}
		var res sql.NullInt64
		m.mustQueryRow(t, "SELECT MASTER_GTID_WAIT(?, ?)", []any{st["Gtid_IO_Pos"], waitTimeout.Seconds()}, &res)
		if !res.Valid || res.Int64 != 0 {
			t.Fatalf("dbtest: promoting %s: relay log not applied within %v (MASTER_GTID_WAIT(%q) = %v; SQL thread %q, last error %q)",
				m.name, waitTimeout, st["Gtid_IO_Pos"], res, st["Slave_SQL_Running"], st["Last_SQL_Error"])
		}
		m.Exec(t, "STOP SLAVE")
		m.Exec(t, "RESET SLAVE ALL")
	}
	m.Exec(t, "SET GLOBAL read_only = 0")
	m.readOnly.Store(false)
}

// Follow makes the server a read-only replica of primary, using GTIDs: it
// continues from the transactions it has already committed (its
// gtid_binlog_pos), so a former primary can follow too, provided primary has
// every transaction it has. It waits until both replication threads run, so
// a paused replica is resumed.
func (m *MariaDB) Follow(t testing.TB, primary *MariaDB) {
	t.Helper()
	st, err := m.replicaStatus()
	if err != nil {
		t.Fatal(err)
	}
	if st != nil {
		m.Exec(t, "STOP SLAVE")
	}
	m.Exec(t, "SET GLOBAL read_only = 1")
	m.readOnly.Store(true)
	m.Exec(t, "SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos")
	m.Exec(t, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', "+
		"MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
		primary.Port(), mariadbRepl, mariadbReplPass))
	m.Exec(t, "START SLAVE")
	err = poll(waitTimeout, fmt.Sprintf("%s to replicate from %s", m.name, primary.name), func() (bool, error) {
		st, err = m.replicaStatus()
		return err == nil && st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes", err
	})
	if err != nil {
		t.Fatalf("%v (IO thread %q, SQL thread %q, last errors %q %q)", err,
			st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
	}
}
