package mysqldialect

import (
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
}

func TestServerCloseWithConnInUse(t *testing.T) {
	needServer(t)
	fidelity.CloseWithConnInUse(t, fidelityServer)
}

func TestServerShutdown(t *testing.T) {
	needServer(t)
	fidelity.Shutdown(t, fidelityServer)
}

func TestServerSessionKept(t *testing.T) {
	needServer(t)
	fidelity.SessionKept(t, serverAddr, func(t testing.TB, addr, params string) *qorb.Connector {
		c, err := NewConnector(serverUser + "@tcp(" + addr + ")/" + serverDB + "?" + params)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
