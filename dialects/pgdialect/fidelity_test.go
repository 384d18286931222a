package pgdialect

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/fidelity"
)

// fidelityServer is the machine's PostgreSQL server, for the fidelity
// scenarios.
var fidelityServer = fidelity.Server{
	QorbDSN:   "postgres://" + serverUser + "@" + serverAddr + "/" + serverDB + "?sslmode=disable&application_name=qorb-fidelity",
	Driver:    "pgx",
	DSN:       "postgres://" + serverUser + "@" + serverAddr + "/" + serverDB + "?sslmode=disable&application_name=qorb-fidelity-bare",
	SessionID: "SELECT pg_backend_pid()",
	Alive:     "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
	OpenStmts: func(ctx context.Context, c *sql.Conn, marker string) (int, error) {
		var n int
		err := c.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, $1) > 0", marker).Scan(&n)
		return n, err
	},
	// A statement prepared again gets a new prepare_time.
	Prepares: func(ctx context.Context, c *sql.Conn, marker string) (int, error) {
		var us int64
		err := c.QueryRowContext(ctx, "SELECT COALESCE(sum(extract(epoch FROM prepare_time) * 1e6), 0)::bigint FROM pg_prepared_statements WHERE strpos(statement, $1) > 0", marker).Scan(&us)
		return int(us), err
	},
	StaleInTx: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "0A000"
	},
	Addr: serverAddr,
	// A keyword DSN, as lib/pq's tests use.
	Open: func(t testing.TB, addr, params string) *qorb.Connector {
		host, port, _ := net.SplitHostPort(addr)
		c, err := NewConnector("host=" + host + " port=" + port + " user=" + serverUser + " dbname=" + serverDB +
			" sslmode=prefer application_name=qorb-session " + strings.ReplaceAll(params, "&", " "))
		if err != nil {
			t.Fatal(err)
		}
		return c
	},
}

// TestServerFidelity runs the fidelity scenarios against the machine's
// server: db.Close and Connector.Shutdown with connections in use,
// sessions kept by sequential code, statements released after
// sql.Stmt.Close, and statements prepared again after a schema change.
func TestServerFidelity(t *testing.T) {
	needServer(t)
	fidelity.Run(t, fidelityServer)
}
