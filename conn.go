package qorb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/qorb-go/qorb/pool"
)

// conn is the driver.Conn database/sql sees: a light handle that holds a
// pooled connection only while database/sql uses it.
//
// It claims a connection in Connector.Connect, and again in ResetSession,
// which database/sql calls with the operation's context before it reuses
// a handle it kept idle; the router says from which backends. It gives
// the connection back in IsValid, which database/sql calls when the
// operation ends, and in Close. So however many handles database/sql
// keeps, connections are claimed per operation and the pool decides
// which backend serves each one.
//
// database/sql never uses a driver.Conn from two goroutines at once, so
// conn needs no lock.
type conn struct {
	c  *Connector
	cl pool.Claim[*physConn]
	pc *physConn // nil while no connection is claimed
	// broken is the error that showed the physical connection dead.
	broken error
	// claimErr is why ResetSession could not claim a connection; the
	// operation that follows fails with it.
	claimErr error
	// inTx: a transaction begun on the handle has not ended.
	inTx bool
}

// The interfaces database/sql looks for. Where the driver's connection
// lacks one, conn does what database/sql does without it.
var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
)

// bind claims a connection for the operation ctx belongs to, from a
// backend the router allows.
func (cn *conn) bind(ctx context.Context) error {
	cl, err := cn.c.router.claim(ctx)
	if err != nil {
		return err
	}
	cn.cl, cn.pc, cn.broken, cn.claimErr = cl, cl.Conn(), nil, nil
	if cn.pc.mayTrim(&cn.c.stmts, cn.c.stmtKeep) {
		// Statements were closed since: deallocate those beyond the
		// cache, as the driver would have on sql.Stmt.Close.
		cn.pc.trim(&cn.c.stmts, cn.c.stmtKeep)
	}
	return nil
}

// unbind gives the connection back: as broken when an operation showed it
// dead, so the pool replaces it and suspects its backend.
func (cn *conn) unbind() {
	if cn.pc == nil {
		return
	}
	if cn.broken != nil {
		cn.cl.Discard(cn.broken)
	} else {
		cn.cl.Release()
	}
	cn.cl, cn.pc, cn.inTx = pool.Claim[*physConn]{}, nil, false
}

// dc returns the driver's connection. When none is claimed it fails with
// the claim's error, or ErrBadConn: nothing has reached a server then, so
// database/sql may retry.
func (cn *conn) dc() (driver.Conn, error) {
	if cn.pc == nil {
		if cn.claimErr != nil {
			return nil, cn.claimErr
		}
		return nil, driver.ErrBadConn
	}
	return cn.pc.dc, nil
}

// check notes an error that shows the physical connection dead, and lets
// the router learn from it (a read-only server).
func (cn *conn) check(err error) error {
	if err == nil {
		return nil
	}
	cut := cn.pc != nil && cn.pc.cut.Load()
	if cn.broken == nil && (cut || connectionError(err) || cn.driverInvalid()) {
		cn.broken = err
	}
	if cn.pc != nil {
		cn.c.router.failed(cn.pc, err)
	}
	if cut {
		return stalledErr(cn.pc, err)
	}
	return err
}

// driverInvalid reports whether the driver says its connection is no
// longer usable, as go-sql-driver/mysql does after a failed read or write
// (its error then is a plain "invalid connection").
func (cn *conn) driverInvalid() bool {
	if cn.pc == nil {
		return false
	}
	v, ok := cn.pc.dc.(driver.Validator)
	return ok && !v.IsValid()
}

// connectionError reports whether err says the connection itself failed,
// rather than the statement.
func connectionError(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// Unwrap returns the driver's own connection (such as *stdlib.Conn for
// pgx), for code that reaches it through [sql.Conn.Raw]. It is nil when
// the handle holds no connection.
func (cn *conn) Unwrap() driver.Conn {
	if cn.pc == nil {
		return nil
	}
	return cn.pc.dc
}

// ResetSession claims a connection before database/sql reuses the handle,
// with the operation's context. The pool has had the driver reset the
// session of the connection it hands out (see openerConnector.OnAcquire).
func (cn *conn) ResetSession(ctx context.Context) error {
	if cn.pc != nil {
		return nil
	}
	if err := cn.bind(ctx); err != nil {
		if errors.Is(err, driver.ErrBadConn) {
			// The driver found each connection it was handed dead:
			// database/sql drops the handle and tries again.
			return err
		}
		// The operation reports the error. ErrBadConn would make
		// database/sql retry on other handles and at last Connect,
		// each waiting for a claim again: three claim timeouts in
		// all, or just ctx.Err() once ctx has ended.
		cn.claimErr = err
	}
	return nil
}

// IsValid gives the connection back when database/sql is done with the
// handle. It keeps the handle unless the connection failed, which the
// driver's own IsValid may say too.
func (cn *conn) IsValid() bool {
	if v, ok := cn.Unwrap().(driver.Validator); ok && cn.broken == nil && !v.IsValid() {
		cn.broken = errInvalid
	}
	ok := cn.broken == nil
	cn.unbind()
	return ok
}

// errInvalid is why a connection is dropped when its driver says it is no
// longer valid.
var errInvalid = errors.New("qorb: the driver reported the connection invalid")

// Close gives the connection back, if the handle holds one.
func (cn *conn) Close() error {
	cn.unbind()
	return nil
}

func (cn *conn) Prepare(query string) (driver.Stmt, error) {
	return cn.PrepareContext(context.Background(), query)
}

// PrepareContext prepares query on the claimed connection, or finds it in
// that connection's statement cache. The statement it returns prepares
// itself again on whichever connection runs it later; while it is open,
// no connection deallocates it (see stmtcache.go).
func (cn *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	cn.c.stmts.hold(query)
	ds, err := cn.prepared(ctx, query)
	if err != nil {
		cn.c.stmts.release(query)
		return nil, err
	}
	return &stmt{cn: cn, query: query, numInput: ds.NumInput()}, nil
}

// prepared returns query prepared on the claimed connection.
func (cn *conn) prepared(ctx context.Context, query string) (driver.Stmt, error) {
	if _, err := cn.dc(); err != nil {
		return nil, err
	}
	pc := cn.pc
	if ds, ok := pc.cached(query); ok {
		return ds, nil
	}
	var ds driver.Stmt
	var err error
	if p, ok := pc.dc.(driver.ConnPrepareContext); ok {
		ds, err = p.PrepareContext(ctx, query)
	} else {
		ds, err = pc.dc.Prepare(query)
	}
	if err != nil {
		return nil, cn.check(err)
	}
	pc.cache(query, ds)
	pc.trim(&cn.c.stmts, cn.c.stmtKeep)
	return ds, nil
}

// again reports whether an operation of query that failed with err should
// run again: the error says a statement prepared for query must be
// prepared again, so it did not run (see [StaleChecker]). The statement
// is deallocated either way; the operation runs again only outside a
// transaction, which the error has aborted (PostgreSQL) or which the
// program must decide about.
func (cn *conn) again(query string, err error) bool {
	if err == nil || cn.c.stale == nil || cn.pc == nil || !cn.c.stale(err) {
		return false
	}
	cn.pc.evict(query)
	return !cn.inTx
}

func (cn *conn) Begin() (driver.Tx, error) {
	dc, err := cn.dc()
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 the driver may lack BeginTx
	tx, err := dc.Begin()
	return cn.began(tx, err)
}

func (cn *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	dc, err := cn.dc()
	if err != nil {
		return nil, err
	}
	if b, ok := dc.(driver.ConnBeginTx); ok {
		return cn.began(b.BeginTx(ctx, opts))
	}
	if opts.Isolation != driver.IsolationLevel(0) || opts.ReadOnly {
		return nil, errors.New("qorb: the driver supports only default transactions")
	}
	//lint:ignore SA1019 the driver lacks BeginTx
	return cn.began(dc.Begin())
}

// began notes a transaction begun on the handle, until it ends.
func (cn *conn) began(tx driver.Tx, err error) (driver.Tx, error) {
	if err != nil {
		return nil, cn.check(err)
	}
	cn.inTx = true
	return &txn{tx: tx, cn: cn}, nil
}

// txn is a transaction of a handle: the handle knows it is in one until
// it ends.
type txn struct {
	tx driver.Tx
	cn *conn
}

func (t *txn) Commit() error {
	t.cn.inTx = false
	return t.cn.check(t.tx.Commit())
}

func (t *txn) Rollback() error {
	t.cn.inTx = false
	return t.cn.check(t.tx.Rollback())
}

func (cn *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	dc, err := cn.dc()
	if err != nil {
		return nil, err
	}
	e, ok := dc.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if cn.again(query, err) {
		res, err = e.ExecContext(ctx, query, args)
	}
	return res, cn.check(err)
}

func (cn *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	dc, err := cn.dc()
	if err != nil {
		return nil, err
	}
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if cn.again(query, err) {
		rows, err = q.QueryContext(ctx, query, args)
	}
	return rows, cn.queryErr(ctx, err)
}

// queryErr returns the error of a query that returned no rows as
// database/sql should see it. When the query's connection died under it
// and the caller declared the query safe to repeat ([Repeatable], or a
// replica role), it becomes driver.ErrBadConn, so database/sql runs the
// query again on a fresh connection, which the pool takes from a healthy
// backend.
func (cn *conn) queryErr(ctx context.Context, err error) error {
	err = cn.check(err)
	if err == nil || cn.broken == nil || errors.Is(err, driver.ErrBadConn) || !repeatable(ctx, cn.c.router.def) {
		return err
	}
	return fmt.Errorf("%w: %w", driver.ErrBadConn, err)
}

// Ping pings through the driver, or with the dialect's health check when
// the driver has no Ping.
func (cn *conn) Ping(ctx context.Context) error {
	dc, err := cn.dc()
	if err != nil {
		return err
	}
	if p, ok := dc.(driver.Pinger); ok {
		return cn.check(p.Ping(ctx))
	}
	return cn.check(cn.c.opener.Ping(ctx, dc))
}

func (cn *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if cn.pc == nil {
		return driver.ErrSkip
	}
	if c, ok := cn.pc.dc.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
