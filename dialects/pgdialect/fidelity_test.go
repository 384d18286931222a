package pgdialect

import (
	"net"
	"strings"
	"testing"

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
}

func TestServerCloseWithConnInUse(t *testing.T) {
	needServer(t)
	fidelity.CloseWithConnInUse(t, fidelityServer)
}

func TestServerShutdown(t *testing.T) {
	needServer(t)
	fidelity.Shutdown(t, fidelityServer)
}

// TestServerSessionKept opens each pool from a keyword DSN, as lib/pq's
// tests do.
func TestServerSessionKept(t *testing.T) {
	needServer(t)
	fidelity.SessionKept(t, serverAddr, func(t testing.TB, addr, params string) *qorb.Connector {
		host, port, _ := net.SplitHostPort(addr)
		c, err := NewConnector("host=" + host + " port=" + port + " user=" + serverUser + " dbname=" + serverDB +
			" sslmode=prefer application_name=qorb-session " + strings.ReplaceAll(params, "&", " "))
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
