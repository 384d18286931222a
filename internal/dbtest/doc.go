// Package dbtest starts real PostgreSQL 15 and MariaDB 10.11 servers for
// tests: independent servers for fan-out tests, and a primary with streaming
// standbys or GTID replicas for replication tests.
//
// Every server runs as its own processes on a free port of 127.0.0.1, with
// its data directory under /dev/shm, and is torn down by t.Cleanup of the
// test that started it: its processes are killed and waited for, and its
// directory is removed, whether the test passed or not (the server's log tail
// is logged if it failed). Data directories are copied from a template made
// once per test binary, so a server starts in well under a second. If the
// test binary itself dies, the kernel kills its servers (parent-death
// signal).
//
// Servers keep every commit they acknowledged across [Server.Kill]
// (PostgreSQL with synchronous_commit on, MariaDB with
// innodb_flush_log_at_trx_commit=2), so lost rows after a crash are a bug of
// the code under test, not of the harness. They trade only durability against
// an operating system crash for speed.
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
// Replication tests start a cluster and change it under the code under test:
//
//	c := dbtest.StartPostgresCluster(t, 2) // or StartMariaDBCluster
//	// ... write through c.Primary.DSN() ...
//	c.WaitReplicated(t)
//	c.Standbys[0].PauseReplay(t) // lags from now on
//	c.Failover(t, c.Standbys[1]) // stop the primary, promote, re-point the rest
//
// A real HA stack: [StartPatroniCluster] runs etcd and Patroni managing
// PostgreSQL nodes (Patroni runs initdb and pg_basebackup itself), and
// [StartHAProxy] puts HAProxy with Patroni's REST health checks in front:
//
//	c := dbtest.StartPatroniCluster(t, 3)
//	h := dbtest.StartHAProxy(t, c)           // h.PrimaryDSN(), h.ReplicaDSN()
//	leader := c.WaitHealthy(t)
//	leader.KillPostgres(t)                   // Patroni fails over by itself
//	next := c.WaitLeader(t, leader)
//	c.Switchover(t, next, c.SyncStandby(t)) // planned, through the REST API
//
// Patroni leaves its postmasters to init, so they are found by their data
// directory when the cluster is torn down (and by a later test binary's
// sweep if this one died). The programs come from the Debian packages
// patroni, etcd-server and haproxy; tests skip with [HAStackMissing].
//
// The user has database-level grants only, so on a read-only MariaDB replica
// its writes fail as an application's would. Helpers that need more rights
// ([Server.Exec], session counts, replication control) use a separate admin
// connection.
//
// Methods that take a [testing.TB] fail the test with t.Fatal, so they must be
// called from the test's own goroutine. The accessors (Addr, Port, the DSN
// methods) are safe to call from any goroutine. Every wait is bounded: a
// server gets a minute to start or stop, a helper's statement 30 seconds (so
// a helper that queries a paused server fails after 30 seconds), replication
// 30 seconds to catch up.
//
// The package imports pgx's stdlib and go-sql-driver/mysql for its own admin
// connections, so the database/sql drivers "pgx" and "mysql" are registered
// in every test binary that uses it.
//
// For goroutine leak checks: each server holds two goroutines of its own until
// its teardown, one that waits for its running process and the opener of
// database/sql for its admin pool ([Server.Admin]). Start servers before
// taking a goroutine baseline.
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
