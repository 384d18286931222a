// Package dbtest starts real PostgreSQL 15 and MariaDB 10.11 servers for
// tests: independent servers for fan-out tests, and a primary with streaming
// standbys or GTID replicas for replication tests.
//
// Every server runs as its own process group on a free port of 127.0.0.1,
// with its data directory under /dev/shm, and is torn down by t.Cleanup of
// the test that started it: its processes are killed and waited for, and its
// directory is removed, whether the test passed or not. Data directories are
// copied from a template made once per test binary, so a server starts in
// well under a second.
//
// A test connects as [User] with [Password] to the database [Database]:
//
//	pgs := dbtest.StartPostgres(t, 3)
//	db, err := sql.Open("pgx", pgs[0].DSN())
//	...
//	var port int
//	err = db.QueryRow("SELECT inet_server_port()").Scan(&port) // pgs[0].Port()
//	pgs[0].Kill(t)  // crash
//	pgs[0].Start(t) // same port, same data
//
// The user has database-level grants only, so on a read-only MariaDB replica
// its writes fail as an application's would. Helpers that need more rights
// ([Server.Exec], session counts, replication control) use a separate admin
// connection.
//
// Methods that take a [testing.TB] fail the test with t.Fatal, so they must be
// called from the test's own goroutine. The accessors (Addr, Port, the DSN
// methods) are safe to call from any goroutine.
//
// The package needs root (it runs the servers as the postgres and mysql
// users) and the server binaries that scripts/setup installs. A test binary
// that imports it may call [Main] from TestMain to remove the templates on
// exit; otherwise a later run removes what a finished one left behind.
package dbtest

// Credentials and database that every server started by this package accepts.
const (
	// User is the test user. On PostgreSQL it owns Database; on MariaDB it
	// has ALL on Database and nothing else.
	User = "qorb"
	// Password is User's password.
	Password = "qorb"
	// Database is the database that tests use.
	Database = "qorbtest"
)
