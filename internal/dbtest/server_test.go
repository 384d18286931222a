package dbtest

import (
	"net"
	"testing"
)

// takenPorts returns a port picker that first hands out the given ports,
// then free ones.
func takenPorts(ports ...int) func() (int, error) {
	return func() (int, error) {
		if len(ports) > 0 {
			p := ports[0]
			ports = ports[1:]
			return p, nil
		}
		return freePort()
	}
}

// listen holds a port of 127.0.0.1 until the test ends.
func listen(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// TestPortCollision starts servers on ports that another process took after
// they were picked: one held by a plain listener, one by a server of the same
// kind that answers with the same users. Each must end up on a port of its
// own.
func TestPortCollision(t *testing.T) {
	t.Run("Postgres", func(t *testing.T) {
		other := StartPostgres(t, 1)[0]
		busy := listen(t)
		p := newPostgres(t, takenPorts(other.Port(), busy), func(_ account, _, data string) error {
			tmpl, err := postgresTemplate()
			if err != nil {
				return err
			}
			return copyTree(tmpl, data)
		})
		if p.Port() == other.Port() || p.Port() == busy {
			t.Errorf("Port() = %d, which was taken", p.Port())
		}
		db := openDB(t, "pgx", p.DSN())
		if got := queryInt(t, db, "SELECT inet_server_port()"); got != p.Port() {
			t.Errorf("inet_server_port() = %d, want %d", got, p.Port())
		}
	})
	t.Run("MariaDB", func(t *testing.T) {
		other := StartMariaDB(t, 1)[0]
		busy := listen(t)
		m := newMariaDB(t, takenPorts(other.Port(), busy), false)
		if m.Port() == other.Port() || m.Port() == busy {
			t.Errorf("Port() = %d, which was taken", m.Port())
		}
		db := openDB(t, "mysql", m.DSN())
		if got := queryInt(t, db, "SELECT @@port"); got != m.Port() {
			t.Errorf("@@port = %d, want %d", got, m.Port())
		}
	})
}
