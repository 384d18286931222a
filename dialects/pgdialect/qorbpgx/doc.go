// Package qorbpgx is qorb's pool for programs that use pgx directly,
// without database/sql: a [Pool] with pgxpool's everyday API (Query,
// QueryRow, Exec, Begin, SendBatch, CopyFrom, Acquire, Ping, Stat, Close)
// over the same pool, router and dialect as the qorb driver.
//
//	p, err := qorbpgx.New(ctx, "postgres+srv://app@db.service.consul/app?target_session_attrs=read-write")
//	defer p.Close()
//	var n int
//	err = p.QueryRow(qorb.WithRole(ctx, qorb.RoleReplica), "SELECT count(*) FROM notes").Scan(&n)
//
// The connection string is the driver's DSN (SRV records or a static host
// list, pool_ parameters, target_session_attrs, pool_max_lag,
// replica_srv, dns_server) or pgx's keyword/value form (see
// [ParseConfig]). The roles ([qorb.WithRole]), write tokens
// ([Pool.WriteToken], [qorb.WithWriteToken]) and [qorb.Repeatable] work
// as they do through database/sql, as do the health checks, the
// replacement of connections that broke or were left inside a
// transaction, TLS verification against the SRV target's name, the
// events of Policy.Observer, the OpenTelemetry metrics and the stats page
// ([Pool.Stats] is what statshttp.Handler reads).
//
// # Connections and operations
//
// Each connection is pgx's own *pgx.Conn, opened by the pgdialect Opener.
// An operation of the Pool leases one for itself and gives it back when
// it ends: Exec, CopyFrom and Ping when they return, Query when its rows
// are read to the end or closed, QueryRow when its row is scanned,
// SendBatch when its results are closed, Begin when the transaction
// commits or rolls back. [Pool.Acquire] keeps a connection, and so its
// backend, until [Conn.Release].
//
// Query and QueryRow read the first row before they return. A read safe
// to repeat ([qorb.Repeatable], or a replica role) whose connection dies,
// or whose backend stalls, before that row runs again on another
// connection, and so on a healthy backend; any other operation fails.
//
// A connection given back is reused only if pgx reports it open, not
// busy and outside a transaction; otherwise it is closed and replaced,
// and a connection that died puts its backend under suspicion.
//
// # Hooks
//
// [Config] has pgxpool's hooks: AfterConnect, PrepareConn, AfterRelease
// and BeforeClose.
package qorbpgx
