package integration

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/pool"
)

// The machine's own servers, which scripts/setup starts: PostgreSQL with
// trust authentication for postgres on database test, MariaDB with root
// and an empty password on database test.
const (
	localPG    = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	localMySQL = "mysql://root@127.0.0.1:3306/test"
)

// needLocal fails the test when the local server at addr does not answer:
// the test command starts it, so its absence is a failure.
func needLocal(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("no local server at %s (scripts/setup starts it): %v", addr, err)
	}
	c.Close()
}

// openQorb opens dsn through qorb and closes it when the test ends.
func openQorb(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("qorb", dsn)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryOne runs query on db and scans its one value into dst, failing the
// test on error.
func queryOne(t *testing.T, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, dst any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, query).Scan(dst); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// qorbStats returns the stats of the qorb connector behind db.
func qorbStats(t *testing.T, db *sql.DB) pool.Stats {
	t.Helper()
	c, err := qorb.ConnectorOf(db)
	if err != nil {
		t.Fatalf("ConnectorOf: %v", err)
	}
	return c.Stats()
}

func errorsIsBadDSN(err error) bool { return errors.Is(err, qorb.ErrBadDSN) }
