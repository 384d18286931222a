package dbtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// LSN is a PostgreSQL write-ahead log position (pg_lsn).
type LSN uint64

// ParseLSN parses the text form of a pg_lsn, such as "0/3000148".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if ok {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if err1 == nil && err2 == nil {
			return LSN(h<<32 | l), nil
		}
	}
	return 0, fmt.Errorf("dbtest: bad LSN %q", s)
}

// String returns the LSN in PostgreSQL's text form, such as "0/3000148".
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// PostgresCluster is a PostgreSQL primary and its streaming standbys, made
// by [StartPostgresCluster]. Failover changes which server is in which field;
// every server is torn down when the test that started the cluster ends.
type PostgresCluster struct {
	// Primary is the server that takes writes.
	Primary *Postgres
	// Standbys stream from Primary, asynchronously, and take reads.
	Standbys []*Postgres
}

// StartPostgresCluster starts a primary and the given number of standbys,
// each made with pg_basebackup -R, and waits until every standby streams
// from the primary.
func StartPostgresCluster(t testing.TB, standbys int) *PostgresCluster {
	t.Helper()
	c := &PostgresCluster{Primary: StartPostgres(t, 1)[0]}
	for range standbys {
		c.AddStandby(t)
	}
	return c
}

// Servers returns the primary followed by the standbys.
func (c *PostgresCluster) Servers() []*Postgres {
	return append([]*Postgres{c.Primary}, c.Standbys...)
}

// AddStandby makes a new standby of the current primary with pg_basebackup,
// starts it, waits until it streams, and appends it to Standbys.
func (c *PostgresCluster) AddStandby(t testing.TB) *Postgres {
	t.Helper()
	primary := c.Primary
	s := newPostgres(t, freePort, func(acct account, name, data string) error {
		if _, err := acct.run("", filepath.Join(PGBin, "pg_basebackup"), "-h", "127.0.0.1",
			"-p", strconv.Itoa(primary.Port()), "-U", "postgres", "-D", data,
			"-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
			return err
		}
		// Later lines win: replace what -R wrote with a conninfo that names the
		// standby in pg_stat_replication.
		f, err := os.OpenFile(filepath.Join(data, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(f, "primary_conninfo = '%s'\n", primaryConninfo(primary, name))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err := s.waitStreaming(primary); err != nil {
		t.Fatal(err)
	}
	c.Standbys = append(c.Standbys, s)
	return s
}

// primaryConninfo returns the primary_conninfo with which standby name
// streams from primary.
func primaryConninfo(primary *Postgres, name string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", primary.Port(), name)
}

// waitStreaming waits until the standby's WAL receiver streams from primary.
func (p *Postgres) waitStreaming(primary *Postgres) error {
	var status string
	var port int
	err := poll(waitTimeout, fmt.Sprintf("%s to stream from %s", p.name, primary.name), func() (bool, error) {
		err := p.queryRow(context.Background(),
			"SELECT coalesce(max(status), ''), coalesce(max(sender_port), 0) FROM pg_stat_wal_receiver",
			nil, &status, &port)
		return err == nil && status == "streaming" && port == primary.Port(), err
	})
	if err != nil {
		return fmt.Errorf("%w (WAL receiver %q from port %d)\n--- log:\n%s", err, status, port, p.LogTail())
	}
	return nil
}

// WaitReplicated waits until every standby has replayed the primary's
// current WAL position. Standbys whose replay is paused are skipped.
func (c *PostgresCluster) WaitReplicated(t testing.TB) {
	t.Helper()
	lsn := c.Primary.WALPosition(t)
	for _, s := range c.Standbys {
		var paused bool
		s.mustQueryRow(t, "SELECT pg_is_wal_replay_paused()", nil, &paused)
		if !paused {
			s.WaitWAL(t, lsn)
		}
	}
}

// Failover makes to, one of the standbys, the primary: it stops the current primary
// cleanly if it runs (so the standbys receive all of its WAL), promotes to,
// and points every other running standby at it. Afterwards Primary is to and
// Standbys holds the others; the former primary stays stopped and out of the
// cluster.
func (c *PostgresCluster) Failover(t testing.TB, to *Postgres) {
	t.Helper()
	var rest []*Postgres
	found := false
	for _, s := range c.Standbys {
		if s == to {
			found = true
		} else {
			rest = append(rest, s)
		}
	}
	if !found {
		t.Fatalf("dbtest: failover to %s, which is not a standby of the cluster", to.Name())
	}
	if c.Primary.Running() {
		c.Primary.Stop(t)
	}
	to.Promote(t)
	for _, s := range rest {
		if s.Running() {
			s.Follow(t, to)
		}
	}
	c.Primary, c.Standbys = to, rest
}

// WALPosition returns how far the server's WAL goes: on a primary the
// current write position (pg_current_wal_lsn()), on a standby the last
// position replayed (pg_last_wal_replay_lsn()).
func (p *Postgres) WALPosition(t testing.TB) LSN {
	t.Helper()
	lsn, err := p.walPosition()
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func (p *Postgres) walPosition() (LSN, error) {
	var s string
	err := p.queryRow(context.Background(), `SELECT (CASE WHEN pg_is_in_recovery()
		THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`, nil, &s)
	if err != nil {
		return 0, err
	}
	return ParseLSN(s)
}

// ReceivedWALPosition returns the last WAL position a standby has received
// and written (pg_last_wal_receive_lsn()), which may be ahead of what it
// replayed.
func (p *Postgres) ReceivedWALPosition(t testing.TB) LSN {
	t.Helper()
	var s string
	p.mustQueryRow(t, "SELECT coalesce(pg_last_wal_receive_lsn(), '0/0')::text", nil, &s)
	lsn, err := ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// WaitWAL waits until the server's WALPosition reaches lsn, for at most 30
// seconds.
func (p *Postgres) WaitWAL(t testing.TB, lsn LSN) {
	t.Helper()
	var at LSN
	err := poll(waitTimeout, fmt.Sprintf("%s to replay WAL up to %v", p.name, lsn), func() (bool, error) {
		var err error
		at, err = p.walPosition()
		return at >= lsn, err
	})
	if err != nil {
		t.Fatalf("%v (at %v)", err, at)
	}
}

// PauseReplay stops the standby from applying WAL (pg_wal_replay_pause());
// it keeps receiving it. No WAL record is applied after PauseReplay returns,
// so the standby lags from then on. ResumeReplay undoes it.
func (p *Postgres) PauseReplay(t testing.TB) {
	t.Helper()
	p.Exec(t, "SELECT pg_wal_replay_pause()")
}

// ResumeReplay lets a paused standby apply WAL again (pg_wal_replay_resume()).
func (p *Postgres) ResumeReplay(t testing.TB) {
	t.Helper()
	p.Exec(t, "SELECT pg_wal_replay_resume()")
}

// Promote makes the standby a primary (pg_promote()) and waits until it
// takes writes. A paused standby is resumed by the promotion.
func (p *Postgres) Promote(t testing.TB) {
	t.Helper()
	var ok bool
	p.mustQueryRow(t, "SELECT pg_promote(true, 30)", nil, &ok)
	if !ok {
		t.Fatalf("dbtest: promoting %s: pg_promote did not finish\n--- log:\n%s", p.name, p.LogTail())
	}
	err := poll(waitTimeout, p.name+" to leave recovery", func() (bool, error) {
		var in bool
		err := p.queryRow(context.Background(), "SELECT pg_is_in_recovery()", nil, &in)
		return !in, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Follow points the standby at another primary, without a restart (ALTER
// SYSTEM SET primary_conninfo, then a reload), and waits until it streams
// from it. A paused standby stays paused (it receives, but does not replay).
// The standby must not be ahead of the new primary; if it is, make a new one
// with AddStandby.
func (p *Postgres) Follow(t testing.TB, primary *Postgres) {
	t.Helper()
	p.Exec(t, fmt.Sprintf("ALTER SYSTEM SET primary_conninfo = '%s'", primaryConninfo(primary, p.name)))
	p.Exec(t, "SELECT pg_reload_conf()")
	if err := p.waitStreaming(primary); err != nil {
		t.Fatal(err)
	}
}
