package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// DefaultCloseTimeout is how long [Connector.Close] waits, unless told
// otherwise, for connections still in use before it closes them anyway.
const DefaultCloseTimeout = 5 * time.Second

// Config configures a [Connector].
type Config struct {
	// Opener opens connections to single backends. Required.
	Opener Opener
	// Resolver finds the backends. Required.
	Resolver resolver.Resolver
	// Settings are the pool policy and the rest of what qorb's DSN
	// parameters can say.
	Settings
}

// Connector is a [driver.Connector] over a pool of connections to the
// backends of one service. Give it to [sql.OpenDB]; [sql.Open] with the
// driver name "qorb" makes one from a DSN.
//
// Every database/sql operation claims a pooled connection when it starts
// and gives it back when it ends, so the pool, not database/sql, decides
// which backend serves it. A [sql.Conn] or [sql.Tx] keeps its connection,
// and so its backend, until it is closed.
//
// Close, which [sql.DB.Close] calls, stops the resolver and the pool and
// closes every connection.
type Connector struct {
	opener       Opener
	pool         *pool.Pool[*physConn]
	role         Role
	reset        bool
	closeTimeout time.Duration
	maxLag       time.Duration
	// repl follows replication positions; nil unless the Opener is a
	// Replicator.
	repl *replState
	// The claim filters for each role, made once so claims do not
	// allocate.
	primaryFilter, replicaFilter pool.Filter

	closeOnce sync.Once
	closeErr  error
}

var (
	_ pool.RoleReporter[*physConn] = backendConns{}
	_ driver.Connector             = (*Connector)(nil)
	_ interface{ Close() error }   = (*Connector)(nil)
)

// NewConnector starts a connector: its resolver and pool begin finding
// backends and opening connections at once.
func NewConnector(cfg Config) (*Connector, error) {
	if cfg.Opener == nil || cfg.Resolver == nil {
		return nil, errors.New("qorb: NewConnector needs an Opener and a Resolver")
	}
	c := &Connector{
		opener:       cfg.Opener,
		role:         cfg.DefaultRole,
		reset:        cfg.Reset,
		closeTimeout: cfg.CloseTimeout,
	}
	if c.closeTimeout <= 0 {
		c.closeTimeout = DefaultCloseTimeout
	}
	if rep, ok := cfg.Opener.(Replicator); ok {
		c.repl = &replState{rep: rep}
	}
	c.maxLag = cfg.MaxLag
	c.primaryFilter = func(b resolver.Backend) bool { return b.Role != resolver.RoleReplica }
	c.replicaFilter = func(b resolver.Backend) bool {
		return b.Role != resolver.RolePrimary && !c.lagging(b.Key())
	}
	pol := cfg.Policy
	if c.maxLag > 0 && c.repl != nil {
		// Lag is measured at health checks: check at least twice per
		// allowed lag.
		if pol.HealthInterval == 0 || pol.HealthInterval > c.maxLag/2 {
			pol.HealthInterval = max(c.maxLag/2, 10*time.Millisecond)
		}
	}
	// Without a full reset, recycling only looks at in-memory session
	// state, so by default it runs on the releasing goroutine.
	if pol.Recycle == pool.RecycleDefault && !cfg.Reset {
		pol.Recycle = pool.RecycleInline
	}
	p, err := pool.New[*physConn](cfg.Resolver, backendConns{c}, pol)
	if err != nil {
		return nil, err
	}
	c.pool = p
	return c, nil
}

// Connect claims a pooled connection for one database/sql operation. It
// waits for one until ctx ends or the pool's claim timeout passes, and
// then fails with an error wrapping [pool.ErrClaimTimeout] that says what
// each backend last did. It never returns [driver.ErrBadConn].
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn := &conn{c: c}
	for attempt := 1; ; attempt++ {
		if err := cn.bind(ctx); err != nil {
			return nil, err
		}
		// database/sql checks a handle it reuses with ResetSession, where
		// a driver finds a connection its server has closed (as
		// go-sql-driver/mysql does), but not a new one: check the
		// connection claimed for it the same way, and claim another in
		// place of a dead one, so the operation does not fail on it.
		r, ok := cn.pc.dc.(driver.SessionResetter)
		if !ok || attempt == connectChecks {
			return cn, nil
		}
		err := r.ResetSession(ctx)
		if err == nil {
			return cn, nil
		}
		cn.check(err)
		if cn.broken == nil {
			cn.broken = err
		}
		cn.unbind()
	}
}

// connectChecks bounds the connections Connect claims when the driver
// finds them dead; the last one is returned unchecked.
const connectChecks = 3

// Driver returns the qorb driver.
func (c *Connector) Driver() driver.Driver { return qorbDriver }

// Stats returns a snapshot of the connector's pool.
func (c *Connector) Stats() pool.Stats { return c.pool.Stats() }

// Close stops the resolver and the pool, closes idle connections at once
// and those still in use when they come back, or after the close timeout
// (pool_close_timeout, default 5 s) at the latest. It may be called more
// than once.
func (c *Connector) Close() error {
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.closeTimeout)
		defer cancel()
		c.closeErr = c.pool.Close(ctx)
	})
	return c.closeErr
}

// physConn is one physical connection in the pool, with the statements
// prepared on it.
type physConn struct {
	dc    driver.Conn
	key   resolver.Key // its backend
	stmts map[string]driver.Stmt
}

// lagging reports whether backend k is further behind its primary than
// the connector allows.
func (c *Connector) lagging(k resolver.Key) bool {
	return c.maxLag > 0 && c.repl != nil && c.repl.lag(k, time.Now()) > c.maxLag
}

// maxStmts bounds a connection's statement cache.
const maxStmts = 256

// closeStmts closes the connection's cached statements.
func (pc *physConn) closeStmts() {
	for q, s := range pc.stmts {
		s.Close()
		delete(pc.stmts, q)
	}
}

// backendConns adapts an Opener to the pool's Connector.
type backendConns struct{ c *Connector }

func (b backendConns) Connect(ctx context.Context, be resolver.Backend) (*physConn, error) {
	dc, err := b.c.opener.Connect(ctx, be)
	if err != nil {
		return nil, err
	}
	return &physConn{dc: dc, key: be.Key()}, nil
}

// Role asks the server its role, and, for a database that replicates, its
// position, after each connect and passed health check.
func (b backendConns) Role(ctx context.Context, pc *physConn) (resolver.Role, error) {
	role, err := b.c.opener.Role(ctx, pc.dc)
	if err != nil || b.c.repl == nil {
		return role, err
	}
	pos, err := b.c.repl.rep.Position(ctx, pc.dc)
	if err != nil {
		// The backend still answers: only its position is unknown, so it
		// counts as lagging and past no token, but stays online.
		b.c.repl.forget(pc.key)
		return role, nil
	}
	b.c.repl.observe(pc.key, role, pos, time.Now())
	return role, nil
}

func (b backendConns) IsValid(ctx context.Context, pc *physConn) error {
	return b.c.opener.Ping(ctx, pc.dc)
}

func (b backendConns) OnRecycle(ctx context.Context, pc *physConn) error {
	if b.c.reset {
		// A full reset forgets prepared statements on the server.
		pc.closeStmts()
	}
	return b.c.opener.Recycle(ctx, pc.dc, b.c.reset)
}

func (b backendConns) Close(pc *physConn) error {
	pc.closeStmts()
	return pc.dc.Close()
}

// ConnectorOf returns the Connector behind a database opened with
// sql.Open("qorb", ...), for its Stats. It borrows a connection to find
// it, so it waits, like any operation, for one to be free.
func ConnectorOf(ctx context.Context, db *sql.DB) (*Connector, error) {
	var found *Connector
	err := withConn(ctx, db, "ConnectorOf", func(cn *conn) error {
		found = cn.c
		return nil
	})
	return found, err
}

// withConn runs f with a qorb connection of db, claimed for ctx; what
// names the caller in the error for a database not opened with qorb.
func withConn(ctx context.Context, db *sql.DB, what string, f func(*conn) error) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Raw(func(dc any) error {
		cn, ok := dc.(*conn)
		if !ok {
			return fmt.Errorf("qorb: %s needs a database opened with qorb, not %T", what, dc)
		}
		return f(cn)
	})
}
