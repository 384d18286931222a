// Package mysqldialect is qorb's MySQL and MariaDB dialect, on
// go-sql-driver/mysql.
//
// Importing it registers the DSN schemes mysql+srv and mysql with qorb, so
// that database/sql can open a pool of MySQL backends:
//
//	import _ "github.com/qorb-go/qorb/dialects/mysqldialect"
//
//	db, err := sql.Open("qorb", "mysql+srv://app@db.service.consul/app?tls=true&parseTime=true")
//
// A +srv DSN finds the backends under _mysql._tcp.NAME; the other form
// lists them: mysql://app@10.0.0.1:3306,10.0.0.2/app. Every parameter that
// is not qorb's own (pool_*, dns_server, replica_srv, target_session_attrs:
// see [qorb.OwnParam]) is a go-sql-driver/mysql DSN parameter, such as
// tls, parseTime, timeout, charset, or a system variable to SET on each
// connection. Two are
// refused: password, which the driver would run as SET password=... on
// every connection (the password belongs in user:password@), and strict,
// which the driver no longer has and panics on.
//
// Existing go-sql-driver/mysql DSNs work unchanged through
// [NewConnector], with the hosts inside tcp(...) (one or several, comma
// separated) as the backends:
//
//	c, err := mysqldialect.NewConnector("app:secret@tcp(10.0.0.1:3306,10.0.0.2:3306)/app?parseTime=true&pool_max_conns=20")
//	db := sql.OpenDB(c)
//
// # Connections
//
// Each backend connection is the driver's own connection, opened through
// [mysql.NewConnector], so every driver feature keeps working. It dials
// the backend's address (an IP address DNS gave, for a +srv DSN) and TLS
// sends and verifies the backend's host name (the SRV target), never the
// IP address. A TLS configuration registered with [mysql.RegisterTLSConfig]
// that names a server itself keeps its name.
//
// # Recycling and pool_reset_session
//
// When a connection comes back to the pool, [Opener.Recycle] rejects it,
// without any I/O, if the driver reports it unusable (closed, or with a
// result not read to the end). Without I/O it cannot see a transaction
// left open by a raw BEGIN or by autocommit=0; a [database/sql.Tx] always
// ends before its connection comes back.
//
// MySQL resets a session with COM_RESET_CONNECTION, which
// go-sql-driver/mysql does not expose, and no SQL statement does the same.
// So pool_reset_session=true does the nearest safe thing instead. On a
// server that has both @@in_transaction and RELEASE_ALL_LOCKS(), such as
// MariaDB 10.5 and later, that takes two round trips:
//
//   - SELECT @@in_transaction, RELEASE_ALL_LOCKS(): a connection inside a
//     transaction is rejected (and so closed, which rolls the transaction
//     back on the server); the named locks taken with GET_LOCK are
//     released.
//   - UNLOCK TABLES releases the table locks taken with LOCK TABLES.
//
// MySQL has no @@in_transaction: there a ROLLBACK takes the place of the
// check, so a transaction left open is rolled back rather than refused,
// and the reset takes three round trips (ROLLBACK, UNLOCK TABLES, SELECT
// RELEASE_ALL_LOCKS()). Where the server has no RELEASE_ALL_LOCKS(),
// named locks stay. Once one server lacked either, an Opener takes these
// steps one by one from then on.
//
// Everything else in the session survives a reset, and the next user of
// the connection sees it: user variables (@name), temporary tables,
// session system variables changed with SET (sql_mode, time_zone,
// autocommit, the character set, the isolation level, ...), the current
// database chosen with USE, prepared statements made with SQL PREPARE,
// and the last insert ID. An application that changes those must change
// them back, or not share its connections.
//
// # Replication
//
// [Opener] is a [qorb.Replicator]. On MariaDB a position is a GTID
// position, such as "0-1-100,1-2-7": on a primary (a server without
// read_only) @@gtid_binlog_pos, on a read-only replica @@gtid_slave_pos,
// what its SQL thread has applied and committed ([Opener.Position] says
// why). [Opener.Reached] compares sequence numbers domain by domain. On
// MySQL a position is @@gtid_executed, a GTID set, which needs
// gtid_mode=ON ([ErrNoGTIDPosition] otherwise), and Reached tests set
// inclusion. Any user can read these variables, so a user with
// database-level grants only will do; such a user is also the one
// read_only stops, with error 1290, which [Opener.ReadOnly] reports (with
// 1792 and 1836).
//
// # Passwords
//
// Errors never show the password.
package mysqldialect
