package dbtest

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PGBin is where the PostgreSQL 15 server binaries are.
const PGBin = "/usr/lib/postgresql/15/bin"

// AdminApplicationName is the application_name of the helpers' own
// PostgreSQL sessions.
const AdminApplicationName = "qorb-dbtest-admin"

// pgConf is appended to the template's postgresql.conf, so that every server
// and standby has it. It trades durability against an OS crash for speed, but
// keeps synchronous_commit on: a killed server must not lose commits it
// acknowledged, or the loss would look like a pool bug.
const pgConf = `
# dbtest
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 32MB
# In the data directory, so that a killed server leaves no segment in /dev/shm.
dynamic_shared_memory_type = mmap
fsync = off
full_page_writes = off
synchronous_commit = on
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 200ms
`

// Postgres is a PostgreSQL 15 server started by [StartPostgres] or
// [StartPostgresCluster]. Its database [Database] is owned by [User], who
// logs in with [Password].
type Postgres struct {
	*Server
}

var pgTemplate = newFuture[string]()

// postgresTemplate returns the data directory of an initialized, stopped
// cluster holding User and Database, making it on first use.
func postgresTemplate() (string, error) {
	return pgTemplate.get(func() (string, error) {
		for _, b := range []string{"initdb", "postgres", "pg_basebackup"} {
			if _, err := os.Stat(filepath.Join(PGBin, b)); err != nil {
				return "", fmt.Errorf("dbtest: PostgreSQL 15 server binaries missing (run scripts/setup): %w", err)
			}
		}
		acct, err := lookupAccount("postgres")
		if err != nil {
			return "", err
		}
		base, err := baseDir()
		if err != nil {
			return "", err
		}
		dir := filepath.Join(base, "pg-template")
		if err := acct.mkdir(dir); err != nil {
			return "", err
		}
		data := filepath.Join(dir, "data")
		if _, err := acct.run("", filepath.Join(PGBin, "initdb"), "-D", data, "-U", "postgres",
			"--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"); err != nil {
			return "", err
		}
		f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return "", err
		}
		_, err = f.WriteString(pgConf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
		// Single-user mode makes the user and database without a server.
		setup := fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n",
			User, Password, Database, User)
		out, err := acct.run(setup, filepath.Join(PGBin, "postgres"), "--single", "-D", data, "postgres")
		if err == nil && strings.Contains(out, "ERROR") {
			err = fmt.Errorf("dbtest: setting up the PostgreSQL template: %s", tail([]byte(out)))
		}
		if err != nil {
			return "", err
		}
		return data, nil
	})
}

// newPostgres makes a server whose data directory prepare fills in, and starts
// it on a port from pick.
func newPostgres(t testing.TB, pick func() (int, error), prepare func(acct account, name, data string) error) *Postgres {
	t.Helper()
	acct, _, name, dir := instanceDir(t, "postgres", "pg")
	s := newServer(t, name, dir, acct)
	data := filepath.Join(dir, "data")
	if err := prepare(acct, name, data); err != nil {
		t.Fatalf("dbtest: preparing %s: %v", name, err)
	}
	s.command = func() (string, []string) {
		return filepath.Join(PGBin, "postgres"), []string{"-D", data, "-p", strconv.Itoa(s.port)}
	}
	s.stopSignal = syscall.SIGINT // fast shutdown
	s.openAdmin = openPostgresAdmin
	s.dataDirQuery = "SHOW data_directory"
	if err := s.firstStart(pick); err != nil {
		t.Fatal(err)
	}
	return &Postgres{Server: s}
}

func openPostgresAdmin(port int) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf(
		"host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=5 application_name=%s",
		port, AdminApplicationName))
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cfg)
	// A fresh connection per use: no stale connection after a restart, and no
	// idle session of ours on the server.
	db.SetMaxIdleConns(0)
	return db, nil
}

// StartPostgres starts n independent PostgreSQL servers and waits until each
// answers. They are torn down when t's test ends.
func StartPostgres(t testing.TB, n int) []*Postgres {
	t.Helper()
	return startPostgres(t, n, "")
}

// startPostgres starts n servers from the template, with hba as their
// pg_hba.conf unless it is empty.
func startPostgres(t testing.TB, n int, hba string) []*Postgres {
	t.Helper()
	tmpl, err := postgresTemplate()
	if err != nil {
		t.Fatal(err)
	}
	servers := make([]*Postgres, n)
	for i := range servers {
		servers[i] = newPostgres(t, freePort, func(_ account, _, data string) error {
			if err := copyTree(tmpl, data); err != nil || hba == "" {
				return err
			}
			return os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o644)
		})
	}
	return servers
}

// passwordHBA is the pg_hba.conf of servers from
// [StartPostgresWithPasswords]: the helpers' own user logs in without a
// password, every other user with its password (scram-sha-256).
const passwordHBA = `host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
`

// StartPostgresWithPasswords starts n servers as [StartPostgres] does,
// except that they check the password of every login but the helpers'
// own, as a production server does: a wrong one fails with SQLSTATE
// 28P01. [User] logs in with [Password].
func StartPostgresWithPasswords(t testing.TB, n int) []*Postgres {
	t.Helper()
	return startPostgres(t, n, passwordHBA)
}

// DSN returns a connection string in keyword/value form for [User] on
// [Database], such as "host=127.0.0.1 port=5432 user=qorb password=qorb
// dbname=qorbtest sslmode=disable". Append " application_name=…" and other
// keywords as needed.
func (p *Postgres) DSN() string { return postgresDSN(p.port) }

// postgresDSN returns the keyword/value connection string for [User] on
// [Database] at port.
func postgresDSN(port int) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable",
		port, User, Password, Database)
}

// URL returns a connection URL for [User] on [Database], such as
// "postgres://qorb:qorb@127.0.0.1:5432/qorbtest?sslmode=disable".
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", User, Password, p.port, Database)
}

// Sessions returns the number of client sessions on the server logged in as
// user, the helper's own excepted.
func (p *Postgres) Sessions(t testing.TB, user string) int {
	t.Helper()
	var n int
	p.mustQueryRow(t, `SELECT count(*) FROM pg_stat_activity
		WHERE usename = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
		[]any{user}, &n)
	return n
}

// AppSessions returns the number of client sessions on the server whose
// application_name is app.
func (p *Postgres) AppSessions(t testing.TB, app string) int {
	t.Helper()
	var n int
	p.mustQueryRow(t, `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
		[]any{app}, &n)
	return n
}

// TerminateSessions ends every client session of user on the server with
// pg_terminate_backend, as an administrator would, and returns how many it
// ended.
func (p *Postgres) TerminateSessions(t testing.TB, user string) int {
	t.Helper()
	var n int
	p.mustQueryRow(t, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE usename = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
		[]any{user}, &n)
	return n
}

// InRecovery reports whether the server is a standby (pg_is_in_recovery()).
func (p *Postgres) InRecovery(t testing.TB) bool {
	t.Helper()
	var in bool
	p.mustQueryRow(t, "SELECT pg_is_in_recovery()", nil, &in)
	return in
}
