package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Accounts that every MariaDB server has besides [User].
const (
	mariadbAdmin     = "qorbadmin" // ALL ON *.* WITH GRANT OPTION; the helpers' own user
	mariadbAdminPass = "qorbadmin"
	mariadbRepl      = "repl" // REPLICATION SLAVE, for replicas
	mariadbReplPass  = "repl"
)

// mariadbSetup runs once, in the template, after mariadb-install-db has made
// the system tables. FLUSH PRIVILEGES loads the grant tables, which bootstrap
// mode otherwise skips, so that CREATE USER works.
var mariadbSetup = fmt.Sprintf(`FLUSH PRIVILEGES;
CREATE USER '%[1]s'@'%%' IDENTIFIED BY '%[2]s';
GRANT ALL ON *.* TO '%[1]s'@'%%' WITH GRANT OPTION;
CREATE USER '%[3]s'@'%%' IDENTIFIED BY '%[4]s';
GRANT REPLICATION SLAVE ON *.* TO '%[3]s'@'%%';
CREATE DATABASE %[5]s;
CREATE USER '%[6]s'@'%%' IDENTIFIED BY '%[7]s';
GRANT ALL ON %[5]s.* TO '%[6]s'@'%%';
`, mariadbAdmin, mariadbAdminPass, mariadbRepl, mariadbReplPass, Database, User, Password)

// MariaDB is a MariaDB 10.11 server started by [StartMariaDB] or
// [StartMariaDBCluster]. [User], with [Password], has ALL on [Database] and no
// global privilege, so read_only applies to it.
type MariaDB struct {
	*Server
	serverID int
	readOnly atomic.Bool // the server starts with --read-only
}

// mariadbBinary finds a MariaDB program on PATH or where Debian puts it.
func mariadbBinary(name, dir string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("dbtest: MariaDB binary %s missing (run scripts/setup): %w", name, err)
	}
	return p, nil
}

type mariadbTemplate struct {
	data    string // data directory with system tables, users and Database
	mariadb string // path of mariadbd
}

var myTemplate = newFuture[mariadbTemplate]()

// mariadbTmpl returns a data directory made by mariadb-install-db, making it
// on first use.
func mariadbTmpl() (mariadbTemplate, error) {
	return myTemplate.get(func() (mariadbTemplate, error) {
		var tmpl mariadbTemplate
		var err error
		if tmpl.mariadb, err = mariadbBinary("mariadbd", "/usr/sbin"); err != nil {
			return tmpl, err
		}
		install, err := mariadbBinary("mariadb-install-db", "/usr/bin")
		if err != nil {
			return tmpl, err
		}
		acct, err := lookupAccount("mysql")
		if err != nil {
			return tmpl, err
		}
		base, err := baseDir()
		if err != nil {
			return tmpl, err
		}
		dir := filepath.Join(base, "mariadb-template")
		if err := acct.mkdir(dir); err != nil {
			return tmpl, err
		}
		setup := filepath.Join(dir, "setup.sql")
		if err := os.WriteFile(setup, []byte(mariadbSetup), 0o644); err != nil {
			return tmpl, err
		}
		tmpl.data = filepath.Join(dir, "data")
		cmd := exec.Command(install, "--no-defaults", "--user=mysql", "--datadir="+tmpl.data,
			"--skip-test-db", "--auth-root-authentication-method=socket",
			"--extra-file="+setup, "--innodb-log-file-size=16M")
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			return tmpl, fmt.Errorf("dbtest: mariadb-install-db: %w\n%s", err, tail(out))
		}
		return tmpl, nil
	})
}

// newMariaDB makes a server from the template and starts it on a port from
// pick, with --read-only if readOnly.
func newMariaDB(t testing.TB, pick func() (int, error), readOnly bool) *MariaDB {
	t.Helper()
	tmpl, err := mariadbTmpl()
	if err != nil {
		t.Fatal(err)
	}
	acct, id, name, dir := instanceDir(t, "mysql", "mariadb")
	s := newServer(t, name, dir, acct)
	data := filepath.Join(dir, "data")
	if err := copyTree(tmpl.data, data); err != nil {
		t.Fatalf("dbtest: preparing %s: %v", name, err)
	}
	m := &MariaDB{Server: s, serverID: id}
	m.readOnly.Store(readOnly)
	s.command = func() (string, []string) {
		args := []string{
			"--no-defaults", // must come first
			"--datadir=" + data,
			"--port=" + strconv.Itoa(s.port),
			"--bind-address=127.0.0.1",
			"--socket=" + filepath.Join(dir, "mysqld.sock"),
			"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
			"--server-id=" + strconv.Itoa(id),
			"--log-bin=mysql-bin",
			"--relay-log=relay-bin",
			"--log-slave-updates=1",
			"--binlog-format=ROW",
			"--skip-name-resolve",
			"--max-connections=500",
			"--innodb-buffer-pool-size=64M",
			"--innodb-log-file-size=16M",
			// 2, not 0: a killed server keeps every commit it acknowledged.
			"--innodb-flush-log-at-trx-commit=2",
			"--sync-binlog=0",
		}
		if m.readOnly.Load() {
			args = append(args, "--read-only=1")
		}
		return tmpl.mariadb, args
	}
	s.stopSignal = syscall.SIGTERM
	s.openAdmin = openMariaDBAdmin
	s.dataDirQuery = "SELECT @@datadir"
	if err := s.firstStart(pick); err != nil {
		t.Fatal(err)
	}
	return m
}

func openMariaDBAdmin(port int) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = mariadbAdmin, mariadbAdminPass
	cfg.Net, cfg.Addr = "tcp", "127.0.0.1:"+strconv.Itoa(port)
	cfg.Timeout = 5 * time.Second
	cfg.ReadTimeout, cfg.WriteTimeout = queryTimeout, queryTimeout
	cfg.Logger = log.New(io.Discard, "", 0) // failed pings while starting are expected
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	// A fresh connection per use: no stale connection after a restart, and no
	// idle session of ours on the server.
	db.SetMaxIdleConns(0)
	return db, nil
}

// StartMariaDB starts n independent MariaDB servers and waits until each
// answers. They are torn down when t's test ends.
func StartMariaDB(t testing.TB, n int) []*MariaDB {
	t.Helper()
	servers := make([]*MariaDB, n)
	for i := range servers {
		servers[i] = newMariaDB(t, freePort, false)
	}
	return servers
}

// DSN returns a go-sql-driver/mysql data source name for [User] on
// [Database], such as "qorb:qorb@tcp(127.0.0.1:3306)/qorbtest". Append
// "?param=value" as needed.
func (m *MariaDB) DSN() string {
	return fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", User, Password, m.port, Database)
}

// ServerID returns the server's @@server_id, unique among the servers of a
// test binary.
func (m *MariaDB) ServerID() int { return m.serverID }

// Sessions returns the number of sessions on the server logged in as user,
// the helper's own excepted (information_schema.PROCESSLIST).
func (m *MariaDB) Sessions(t testing.TB, user string) int {
	t.Helper()
	var n int
	m.mustQueryRow(t, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
		[]any{user}, &n)
	return n
}

// TerminateSessions ends every session of user on the server with KILL
// CONNECTION, as an administrator would, and returns how many it ended.
func (m *MariaDB) TerminateSessions(t testing.TB, user string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := m.admin.Conn(ctx)
	if err != nil {
		t.Fatalf("dbtest: %s: %v", m.name, err)
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx,
		"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()", user)
	if err != nil {
		t.Fatalf("dbtest: %s: %v", m.name, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("dbtest: %s: %v", m.name, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("dbtest: %s: %v", m.name, err)
	}
	n := 0
	for _, id := range ids {
		_, err := conn.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10))
		var me *mysql.MySQLError
		switch {
		case err == nil:
			n++
		case errors.As(err, &me) && me.Number == 1094: // unknown thread: it ended meanwhile
		default:
			t.Fatalf("dbtest: %s: KILL CONNECTION %d: %v", m.name, id, err)
		}
	}
	return n
}

// ReadOnly reports the server's @@global.read_only.
func (m *MariaDB) ReadOnly(t testing.TB) bool {
	t.Helper()
	var ro bool
	m.mustQueryRow(t, "SELECT @@global.read_only", nil, &ro)
	return ro
}
