package integration

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/mysqldialect"
	"github.com/qorb-go/qorb/dialects/pgdialect"
)

// pgSocketDir asks the local PostgreSQL server, over TCP, for the
// directory of its Unix socket.
func pgSocketDir(t *testing.T) string {
	t.Helper()
	needLocal(t, "127.0.0.1:5432")
	var dirs string
	queryOne(t, openQorb(t, localPG), "SHOW unix_socket_directories", &dirs)
	dir, _, _ := strings.Cut(dirs, ",")
	if dir = strings.TrimSpace(dir); !strings.HasPrefix(dir, "/") {
		t.Fatalf("unix_socket_directories = %q, want a directory", dirs)
	}
	return dir
}

// mysqlSocket asks the local MariaDB server, over TCP, for the path of
// its Unix socket.
func mysqlSocket(t *testing.T) string {
	t.Helper()
	needLocal(t, "127.0.0.1:3306")
	var path string
	queryOne(t, openQorb(t, localMySQL), "SELECT @@socket", &path)
	if !strings.HasPrefix(path, "/") {
		t.Fatalf("@@socket = %q, want a path", path)
	}
	return path
}

// TestPostgresUnixSocket checks that a PostgreSQL socket directory is a
// backend, in pgx's keyword form, in its URL form and in a qorb DSN: the
// session it serves is on the socket (inet_server_addr() is NULL there).
func TestPostgresUnixSocket(t *testing.T) {
	dir := pgSocketDir(t)
	open := map[string]func() (*sql.DB, error){
		"keyword": func() (*sql.DB, error) {
			c, err := pgdialect.NewConnector("host=" + dir + " port=5432 user=postgres dbname=test")
			return sql.OpenDB(c), err
		},
		"pgx URL": func() (*sql.DB, error) {
			c, err := pgdialect.NewConnector("postgres://postgres@/test?host=" + url.QueryEscape(dir))
			return sql.OpenDB(c), err
		},
		"qorb DSN": func() (*sql.DB, error) {
			return sql.Open("qorb", "postgres://postgres@"+url.PathEscape(dir)+"/test")
		},
		"qorb DSN with port": func() (*sql.DB, error) {
			return sql.Open("qorb", "postgres://postgres@"+url.PathEscape(dir)+":5432/test")
		},
	}
	eachOpen(t, open, func(t *testing.T, db *sql.DB) {
		var onSocket bool
		queryOne(t, db, "SELECT inet_server_addr() IS NULL", &onSocket)
		if !onSocket {
			t.Error("inet_server_addr() is not NULL: the session is not on the Unix socket")
		}
		st := qorbStats(t, db)
		if len(st.Backends) != 1 || !strings.HasPrefix(st.Backends[0].Backend.Addr, dir) {
			t.Errorf("backends = %+v, want the one socket in %s", st.Backends, dir)
		}
	})
}

// eachOpen runs check as a subtest on the database each of open opens,
// and closes it after.
func eachOpen(t *testing.T, open map[string]func() (*sql.DB, error), check func(*testing.T, *sql.DB)) {
	for name, f := range open {
		t.Run(name, func(t *testing.T) {
			db, err := f()
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			check(t, db)
		})
	}
}

// TestMySQLUnixSocket checks that a MariaDB socket is a backend, in
// go-sql-driver's unix(path) form and in a qorb DSN: the session it serves
// comes from localhost, not from a TCP peer.
func TestMySQLUnixSocket(t *testing.T) {
	path := mysqlSocket(t)
	open := map[string]func() (*sql.DB, error){
		"driver DSN": func() (*sql.DB, error) {
			c, err := mysqldialect.NewConnector("root@unix(" + path + ")/test")
			return sql.OpenDB(c), err
		},
		"qorb DSN": func() (*sql.DB, error) {
			return sql.Open("qorb", "mysql://root@"+url.PathEscape(path)+"/test")
		},
	}
	eachOpen(t, open, func(t *testing.T, db *sql.DB) {
		var host string
		queryOne(t, db, "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()", &host)
		if host != "localhost" {
			t.Errorf("the session's host is %q, want localhost: it is not on the Unix socket", host)
		}
	})
}

// TestMySQLCustomDialer checks that a network registered with
// mysql.RegisterDialContext reaches its backends through that dialer,
// each address of the list a backend of its own, passed to the dialer as
// written.
func TestMySQLCustomDialer(t *testing.T) {
	needLocal(t, "127.0.0.1:3306")
	network := fmt.Sprintf("qorbtest%x", rand.Uint64())
	var dials atomic.Int64
	seen := make(chan string, 64)
	mysql.RegisterDialContext(network, func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		select {
		case seen <- addr:
		default:
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", "127.0.0.1:3306")
	})
	c, err := mysqldialect.NewConnector("root@" + network + "(alpha,beta)/test?pool_max_conns=4&pool_spares=-1")
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var one int
	queryOne(t, db, "SELECT 1", &one)
	if dials.Load() == 0 {
		t.Fatal("the registered dialer was never called")
	}
	st := c.Stats()
	var keys []string
	for _, b := range st.Backends {
		keys = append(keys, b.Backend.String())
	}
	if strings.Join(keys, " ") != "alpha beta" {
		t.Errorf("backends %q, want alpha and beta", keys)
	}
	if addr := <-seen; addr != "alpha" && addr != "beta" {
		t.Errorf("the dialer got address %q, want alpha or beta", addr)
	}
}

// TestSocketDSNErrors checks the errors for socket and driver-form
// mistakes: a go-sql-driver DSN behind mysql:// gets pointed to the right
// form, a socket in tcp() is refused, and a custom network needs an
// address.
func TestSocketDSNErrors(t *testing.T) {
	tests := []struct {
		name   string
		dsn    string
		native bool // a go-sql-driver DSN for mysqldialect.NewConnector
		want   []string
	}{
		{"go-sql-driver DSN behind mysql://", "mysql://root@tcp(127.0.0.1:3306)/test", false,
			[]string{"looks like a go-sql-driver/mysql DSN", "mysqldialect.NewConnector", "mysql://user@host:port/db"}},
		{"unix() behind mysql://", "mysql://root:S3cr3t-Pa55@unix(/run/mysqld/mysqld.sock)/test", false,
			[]string{"looks like a go-sql-driver/mysql DSN"}},
		{"socket in tcp()", "root@tcp(/run/mysqld/mysqld.sock)/test", true, []string{"unix(/path/to/socket)"}},
		{"custom network without address", "root@mynet/test", true, []string{"needs an address"}},
		{"relative socket path", "root@unix(mysqld.sock)/test", true, []string{"absolute path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.native {
				var c *qorb.Connector
				if c, err = mysqldialect.NewConnector(tt.dsn); err == nil {
					c.Close()
				}
			} else {
				_, err = qorb.ParseDSN(tt.dsn)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) || !errorsIsBadDSN(err) {
					t.Errorf("error %q, want ErrBadDSN saying %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "S3cr3t") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}
