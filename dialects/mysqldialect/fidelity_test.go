package mysqldialect

import (
	"context"
	"database/sql"
	"testing"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/fidelity"
)

// fidelityServer is the machine's MariaDB server, for the fidelity
// scenarios.
var fidelityServer = fidelity.Server{
	QorbDSN:   "mysql://" + serverUser + "@" + serverAddr + "/" + serverDB,
	Driver:    "mysql",
	DSN:       serverUser + "@tcp(" + serverAddr + ")/" + serverDB,
	SessionID: "SELECT CONNECTION_ID()",
	Alive:     "SELECT COUNT(*) FROM information_schema.processlist WHERE ID = ?",
	// The server counts prepares and closes per session, not by text.
	OpenStmts: func(ctx context.Context, c *sql.Conn, _ string) (int, error) {
		st, err := stmtStatus(ctx, c)
		return st["Com_stmt_prepare"] - st["Com_stmt_close"], err
	},
	Prepares: func(ctx context.Context, c *sql.Conn, _ string) (int, error) {
		st, err := stmtStatus(ctx, c)
		return st["Com_stmt_prepare"], err
	},
	Addr: serverAddr,
	Open: func(t testing.TB, addr, params string) *qorb.Connector {
		c, err := NewConnector(serverUser + "@tcp(" + addr + ")/" + serverDB + "?" + params)
		if err != nil {
			t.Fatal(err)
		}
		return c
	},
}

// stmtStatus reads the session's statement counters. SHOW without
// arguments goes over the text protocol: it prepares nothing itself.
func stmtStatus(ctx context.Context, c *sql.Conn) (map[string]int, error) {
	rows, err := c.QueryContext(ctx, "SHOW SESSION STATUS LIKE 'Com_stmt_%'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	st := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		st[name] = n
	}
	return st, rows.Err()
}

// TestServerFidelity runs the fidelity scenarios against the machine's
// server: db.Close and Connector.Shutdown with connections in use,
// sessions kept by sequential code, statements released after
// sql.Stmt.Close, and statements prepared again after a schema change.
func TestServerFidelity(t *testing.T) {
	needServer(t)
	fidelity.Run(t, fidelityServer)
}
