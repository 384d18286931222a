// Package pgdialect is qorb's PostgreSQL dialect, on pgx v5.
//
// Importing it registers the DSN schemes postgres+srv, postgresql+srv,
// postgres and postgresql with qorb, so that database/sql can open a pool
// of PostgreSQL backends:
//
//	import _ "github.com/qorb-go/qorb/dialects/pgdialect"
//
//	db, err := sql.Open("qorb", "postgres+srv://app@db.service.consul/app?sslmode=verify-full")
//
// A +srv DSN finds the backends under _postgresql._tcp.NAME; the others
// list them: postgres://app@10.0.0.1:5432,10.0.0.2/app. Every parameter
// that is not qorb's own (pool_*, dns_server, replica_srv,
// target_session_attrs: see [qorb.OwnParam]) is a pgx connection-string
// parameter, as in the keyword/value form's sslmode, connect_timeout,
// application_name or search_path.
//
// Existing pgx connection strings work unchanged through [NewConnector],
// keyword/value and URL forms alike, with the hosts they list as the
// backends:
//
//	c, err := pgdialect.NewConnector("host=10.0.0.1,10.0.0.2 user=app dbname=app pool_max_conns=20")
//	db := sql.OpenDB(c)
//
// # Connections
//
// Each backend connection is pgx's own database/sql connection
// (*stdlib.Conn, from [stdlib.GetConnector]), so everything pgx offers
// keeps working, and sql.Conn.Raw reaches it. It dials the backend's
// address (an IP address DNS gave, for a +srv DSN) and verifies TLS
// against the backend's host name (the SRV target), never the IP address:
// the parsed configuration, its fallbacks (sslmode=prefer and allow try
// twice) and their TLS settings are copied for each connection with the
// backend's address and name in them. With sslsni=0 no name is sent unless
// sslmode=verify-full needs one to verify.
//
// pgx's own liveness ping before reusing a connection idle for over a
// second is turned off: the pool checks idle connections itself
// ([Opener.Ping]), so a claim costs no extra round trip.
//
// # target_session_attrs
//
// pgx would apply target_session_attrs itself, rejecting a backend at
// connect time. qorb routes by role instead: target_session_attrs sets the
// role an operation gets when its context names none (see
// [qorb.WithRole]), and pgx never sees it. PGTARGETSESSIONATTRS in the
// environment is ignored.
//
// # Recycling and pool_reset_session
//
// When a connection comes back to the pool, [Opener.Recycle] rejects it,
// without any I/O, if pgx reports it closed, still busy with a query whose
// results were not read to the end, or inside a transaction (its last
// ReadyForQuery said 'T' or 'E'). A rejected connection is closed and
// replaced, which ends whatever the session held.
//
// With pool_reset_session=true it also resets the session, in two round
// trips: DISCARD ALL, which resets every setting made with SET to the
// session's defaults (those of the startup packet, so the DSN's runtime
// parameters stay), drops temporary tables, deallocates prepared
// statements, closes cursors, releases advisory locks, stops LISTENing and
// resets the session authorization and cached plans; then pgx's
// DeallocateAll, so that pgx forgets the statements it had prepared and
// cached on the connection too.
//
// # Replication
//
// [Opener] is a [qorb.Replicator]. A position is an LSN in PostgreSQL's
// text form, such as "0/3000148": on a primary pg_current_wal_lsn(), the
// end of the WAL written; on a standby pg_last_wal_replay_lsn(), the end
// of the WAL replayed, which is what its queries see (0/0 if it has
// replayed nothing). [Opener.Reached] compares LSNs as numbers. A write
// refused because the server is a standby, or because the transaction is
// read-only, fails with SQLSTATE 25006, which [Opener.ReadOnly] reports.
//
// # Passwords and .pgpass
//
// Errors never show the password. The password comes from the DSN, then
// PGPASSWORD, then .pgpass. pgx reads .pgpass once, when the DSN is
// parsed: a qorb DSN does not name its hosts to pgx at that time, so only
// .pgpass entries whose host is * match it; for [NewConnector] the entry
// of the first host listed is used for every host.
package pgdialect
