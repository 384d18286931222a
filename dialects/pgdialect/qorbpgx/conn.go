package qorbpgx

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/pgdialect"
	"github.com/qorb-go/qorb/resolver"
)

// opener is the pgx dialect's Opener with the Pool's connection hooks:
// its connections are pconns, which the Pool uses through pgx's own API.
// Every other method, and so the health check, role and position queries
// and the recycle checks, is the dialect's.
type opener struct {
	*pgdialect.Opener
	afterConnect func(context.Context, *pgx.Conn) error
	afterRelease func(*pgx.Conn) bool
	beforeClose  func(*pgx.Conn)
}

var (
	_ qorb.Opener       = (*opener)(nil)
	_ qorb.SocketOpener = (*opener)(nil)
	_ qorb.Replicator   = (*opener)(nil)
	// Every way the pool may open a connection must make a pconn.
	_ qorb.CredentialsOpener = (*opener)(nil)
)

func (o *opener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	return o.ConnectSockets(ctx, b, nil)
}

// ConnectSockets opens a connection as the dialect does and runs
// AfterConnect on it; a connection AfterConnect fails is closed.
func (o *opener) ConnectSockets(ctx context.Context, b resolver.Backend, opened func(net.Conn)) (driver.Conn, error) {
	dc, err := o.Opener.ConnectSockets(ctx, b, opened)
	return o.opened(ctx, b, dc, err)
}

// ConnectAs is ConnectSockets with the credentials of
// [qorb.Config.Credentials].
func (o *opener) ConnectAs(ctx context.Context, b resolver.Backend, cr qorb.Credentials, opened func(net.Conn)) (driver.Conn, error) {
	dc, err := o.Opener.ConnectAs(ctx, b, cr, opened)
	return o.opened(ctx, b, dc, err)
}

// opened makes dc, just opened to b by the dialect unless err says it
// failed, a connection of the Pool, and runs AfterConnect on it.
func (o *opener) opened(ctx context.Context, b resolver.Backend, dc driver.Conn, err error) (driver.Conn, error) {
	if err != nil {
		return nil, err
	}
	sc := dc.(*stdlib.Conn)
	pc := &pconn{sc: sc, pgx: sc.Conn(), beforeClose: o.beforeClose}
	if o.afterConnect != nil {
		if err := o.afterConnect(ctx, pc.pgx); err != nil {
			sc.Close()
			return nil, fmt.Errorf("qorbpgx: AfterConnect on %s: %w", b, err)
		}
	}
	return pc, nil
}

// errRefused is why a connection that PrepareConn or AfterRelease refused
// is closed.
var errRefused = errors.New("qorbpgx: connection refused by a PrepareConn or AfterRelease hook")

// Recycle runs AfterRelease and then the dialect's checks (a connection
// closed, busy or inside a transaction is not reused). It runs where the
// pool recycles: on the releasing goroutine, or in the background with
// pool_reset_session.
func (o *opener) Recycle(ctx context.Context, c driver.Conn, reset bool) error {
	if pc, ok := c.(*pconn); ok {
		if pc.drop || o.afterRelease != nil && !o.afterRelease(pc.pgx) {
			return errRefused
		}
	}
	return o.Opener.Recycle(ctx, c, reset)
}

// pconn is one physical connection of a Pool: pgx's database/sql
// connection, as the dialect opened it, which the Connector's pool keeps,
// and the handles the Pool gives out for it. Only the goroutine that has
// it leased uses it.
type pconn struct {
	sc          *stdlib.Conn
	pgx         *pgx.Conn
	beforeClose func(*pgx.Conn)
	// l is its current lease, err the last error an operation of that
	// lease failed with; drop says a hook refused the connection.
	l    qorb.Lease
	err  error
	drop bool
	// Handles are taken from these, each used once, so that an operation
	// costs no allocation of its own.
	conns slab[Conn]
	rows  slab[rows]
	row   slab[row]
}

// slabSize is how many handles of a kind a connection allocates at once.
const slabSize = 128

// slab hands out values of T, each once, allocated slabSize at a time.
type slab[T any] []T

func (s *slab[T]) next() *T {
	if len(*s) == 0 {
		*s = make([]T, slabSize)
	}
	t := &(*s)[0]
	*s = (*s)[1:]
	return t
}

var errNotSQL = errors.New("qorbpgx: the connection belongs to a native pgx pool, not to database/sql")

// Conn returns the pgx connection, for the dialect's checks.
func (c *pconn) Conn() *pgx.Conn { return c.pgx }

func (c *pconn) Prepare(string) (driver.Stmt, error) { return nil, errNotSQL }

func (c *pconn) Begin() (driver.Tx, error) { return nil, errNotSQL }

// Close runs BeforeClose and closes the connection.
func (c *pconn) Close() error {
	if c.beforeClose != nil {
		c.beforeClose(c.pgx)
	}
	return c.sc.Close()
}

// check returns err, which an operation of the lease failed with, as the
// caller should see it (see [qorb.Lease.Check]), and remembers it.
func (c *pconn) check(err error) error {
	if err == nil {
		return nil
	}
	err = c.l.Check(err)
	c.err = err
	return err
}

// broken reports whether the connection is dead: pgx closed it after a
// failure, or the pool cut it when its backend stalled.
func (c *pconn) broken() bool { return c.pgx.IsClosed() || c.l.Cut() }

// errClosed is recorded for a connection found closed at release with no
// error of its own.
var errClosed = errors.New("qorbpgx: connection closed")

// release ends the lease: a dead connection is discarded, so that its
// backend falls under suspicion; any other goes back to be recycled. c
// belongs to its next lease from then on.
func (c *pconn) release() {
	l := c.l
	if c.broken() {
		err := c.err
		if err == nil {
			err = errClosed
		}
		l.Discard(err)
		return
	}
	l.Release()
}

// Conn is a connection acquired from a [Pool]: it keeps its backend until
// Release. It is used by one goroutine at a time.
type Conn struct {
	pc *pconn // nil once released
}

// Release gives the connection back to the pool. It may be called more
// than once; the Conn must not be used after the first call.
func (c *Conn) Release() {
	if c.pc == nil {
		return
	}
	pc := c.pc
	c.pc = nil
	pc.release()
}

// Conn returns the pgx connection.
func (c *Conn) Conn() *pgx.Conn { return c.pc.pgx }

// Backend returns the backend the connection is to; the zero Backend
// once it is released.
func (c *Conn) Backend() resolver.Backend {
	if c.pc == nil {
		return resolver.Backend{}
	}
	return c.pc.l.Backend()
}

// Exec runs sql on the connection, as [pgx.Conn.Exec] does.
func (c *Conn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := c.pc.pgx.Exec(ctx, sql, args...)
	return tag, c.pc.check(err)
}

// Query runs sql on the connection, as [pgx.Conn.Query] does.
func (c *Conn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r, err := c.pc.pgx.Query(ctx, sql, args...)
	return r, c.pc.check(err)
}

// QueryRow runs sql on the connection, as [pgx.Conn.QueryRow] does.
func (c *Conn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return c.pc.pgx.QueryRow(ctx, sql, args...)
}

// SendBatch sends b on the connection, as [pgx.Conn.SendBatch] does.
func (c *Conn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return c.pc.pgx.SendBatch(ctx, b)
}

// CopyFrom copies rows into a table on the connection, as
// [pgx.Conn.CopyFrom] does.
func (c *Conn) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	n, err := c.pc.pgx.CopyFrom(ctx, table, columns, src)
	return n, c.pc.check(err)
}

// Begin starts a transaction on the connection.
func (c *Conn) Begin(ctx context.Context) (pgx.Tx, error) {
	return c.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction with opts on the connection.
func (c *Conn) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := c.pc.pgx.BeginTx(ctx, opts)
	return tx, c.pc.check(err)
}

// Ping checks the connection with a round trip to the server.
func (c *Conn) Ping(ctx context.Context) error {
	return c.pc.check(c.pc.pgx.Ping(ctx))
}
