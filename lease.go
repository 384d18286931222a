package qorb

import (
	"context"
	"database/sql/driver"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// A Lease is one pooled connection of a [Connector], claimed outside
// database/sql by a face over a driver's own API, such as the native pgx
// pool of package dialects/pgdialect/qorbpgx. It is what
// [Connector.Connect] claims for a database/sql operation: from a backend
// the operation's role and write token allow, checked and recycled by the
// Connector's Opener, and cut when its backend stalls.
//
// A Lease is a small value; its first Release or Discard ends it, and
// the connection must not be used after. One goroutine uses it at a time.
type Lease struct {
	c  *Connector
	cl pool.Claim[*physConn]
}

// Lease claims a connection for the operation ctx belongs to, as
// [Connector.Connect] does: of the role ctx asks for ([WithRole]) or the
// Connector's default, past the write token ctx carries
// ([WithWriteToken]), waiting until ctx ends or the claim timeout passes.
func (c *Connector) Lease(ctx context.Context) (Lease, error) {
	cl, err := c.router.claim(ctx)
	if err != nil {
		return Lease{}, err
	}
	return Lease{c: c, cl: cl}, nil
}

// Conn returns the driver's connection, as the Opener opened it.
func (l Lease) Conn() driver.Conn { return l.cl.Conn().dc }

// Backend returns the backend the connection is to.
func (l Lease) Backend() resolver.Backend { return l.cl.Backend() }

// Release gives the connection back. The Opener's Recycle decides whether
// it may be reused: one closed, busy or inside a transaction is closed
// and replaced.
func (l Lease) Release() { l.cl.Release() }

// Discard gives the connection back as broken, as when an operation on it
// showed it dead (see [Lease.Broken]): the pool closes it and suspects
// its backend. err, which may be nil, is recorded as the backend's last
// error.
func (l Lease) Discard(err error) { l.cl.Discard(err) }

// Check returns err, which an operation on the connection failed with, as
// the caller should see it, and lets the Connector learn from it: a
// server that refuses a write as read-only is a replica from now on. When
// the connection was cut because its backend stalled, the error wraps
// [ErrStalled]. A nil err stays nil.
func (l Lease) Check(err error) error {
	if err == nil {
		return nil
	}
	pc := l.cl.Conn()
	l.c.router.failed(pc, err)
	if pc.cut.Load() {
		return stalledErr(pc, err)
	}
	return err
}

// Cut reports whether the pool cut the connection because its backend
// stalled: whatever runs on it fails, and it must be discarded.
func (l Lease) Cut() bool { return l.cl.Conn().cut.Load() }

// Repeatable reports whether the queries of ctx are safe to run twice
// ([Repeatable], or a replica role asked by ctx or by the Connector's
// default): a read whose connection died before it returned a row may
// then run again on another lease.
func (l Lease) Repeatable(ctx context.Context) bool { return repeatable(ctx, l.c.router.def) }

// WriteToken returns a token for every write the primary has made so far,
// as [WriteToken] does for a database: call it after a write commits, and
// pass the token to later reads with [WithWriteToken]. It fails with
// [ErrNoReplication] when the Opener is not a [Replicator].
func (c *Connector) WriteToken(ctx context.Context) (Token, error) {
	rep, ok := c.opener.(Replicator)
	if !ok {
		return "", ErrNoReplication
	}
	l, err := c.Lease(WithRole(ctx, RolePrimary))
	if err != nil {
		return "", err
	}
	pos, err := rep.Position(ctx, l.Conn())
	l.Release()
	return Token(pos), err
}
