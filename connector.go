package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// DefaultCloseTimeout is how long [Connector.Shutdown] waits for
// connections still in use, when its context has no deadline, before it
// closes them anyway.
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
	// Credentials, when not nil, is called before each new connection for
	// the user and password to log in with, in place of the DSN's (see
	// [CredentialsFunc]). It needs an Opener that is a
	// [CredentialsOpener], as the dialect packages' are.
	Credentials CredentialsFunc
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
// closes every connection: at once those not in use, the others when
// they are released. Shutdown is the graceful stop: it waits for the
// connections in use.
type Connector struct {
	opener       Opener
	pool         *pool.Pool[*physConn]
	router       *router
	closeTimeout time.Duration
	drv          Driver // what Driver returns: it leads back to c
	// stmts counts the statements database/sql holds open; stmtKeep is
	// how many unused ones a connection keeps prepared.
	stmts    stmtRefs
	stmtKeep int
	// stale reports whether an error says a prepared statement must be
	// prepared again; nil when the Opener cannot tell.
	stale func(error) bool
	// derive fills in the policy fields NewConnector derives from the
	// other settings (see Settings.Policy), for NewConnector and
	// SetPolicy alike.
	derive func(pool.Policy) pool.Policy

	stopRouter sync.Once
}

var (
	_ pool.RoleReporter[*physConn] = openerConnector{}
	_ pool.Acquirer[*physConn]     = openerConnector{}
	_ pool.Aborter[*physConn]      = openerConnector{}
	_ driver.Connector             = (*Connector)(nil)
	_ interface{ Close() error }   = (*Connector)(nil)
)

// NewConnector starts a connector: its resolver and pool begin finding
// backends and opening connections at once. It takes cfg.Policy as it is,
// except for the fields [Settings] says it derives when left zero.
func NewConnector(cfg Config) (*Connector, error) {
	if cfg.Opener == nil || cfg.Resolver == nil {
		return nil, errors.New("qorb: NewConnector needs an Opener and a Resolver")
	}
	oc := openerConnector{o: cfg.Opener, reset: cfg.Reset}
	if cfg.Credentials != nil {
		co, ok := cfg.Opener.(CredentialsOpener)
		if !ok {
			return nil, fmt.Errorf("qorb: NewConnector: Credentials needs an Opener that is a CredentialsOpener, not %T", cfg.Opener)
		}
		oc.cd = credentialed{cfg.Credentials, co}
	}
	c := &Connector{
		opener:       cfg.Opener,
		router:       newRouter(cfg.Opener, cfg.DefaultRole, cfg.MaxLag),
		closeTimeout: cfg.CloseTimeout,
	}
	if c.closeTimeout <= 0 {
		c.closeTimeout = DefaultCloseTimeout
	}
	switch {
	case cfg.StmtCache == 0:
		c.stmtKeep = DefaultStmtCache
	case cfg.StmtCache > 0:
		c.stmtKeep = cfg.StmtCache
	}
	if sc, ok := cfg.Opener.(StaleChecker); ok {
		c.stale = sc.StaleStatement
	}
	c.drv.c = c
	c.derive = func(pol pool.Policy) pool.Policy {
		if pol.HealthInterval == 0 && c.router.limitsLag() {
			// Lag is measured at health checks: check twice per allowed lag.
			pol.HealthInterval = max(cfg.MaxLag/2, minLagInterval)
		}
		// Without a full reset, recycling only looks at in-memory session
		// state, so by default it runs on the releasing goroutine.
		if pol.Recycle == pool.RecycleDefault && !cfg.Reset {
			pol.Recycle = pool.RecycleInline
		}
		return pol
	}
	pol := c.derive(cfg.Policy)
	switch {
	case cfg.Logger != nil:
		pol.Observer = pool.Observers(pol.Observer, pool.LogEvents(cfg.Logger))
	case pol.LeakThreshold > 0:
		// A leak is logged, to slog.Default() when no logger is given.
		pol.Observer = pool.Observers(pol.Observer, leakLog(pool.LogEvents(slog.New(defaultHandler{}))))
	}
	oc.r = c.router
	p, err := pool.New[*physConn](cfg.Resolver, oc, pol)
	if err != nil {
		return nil, err
	}
	c.pool = p
	c.router.start(p)
	return c, nil
}

// leakLog passes only leak reports on to o.
func leakLog(o pool.Observer) pool.Observer {
	return pool.ObserverFunc(func(e pool.Event) {
		if e.Kind == pool.EventLeak {
			o.Observe(e)
		}
	})
}

// minLagInterval is the shortest health-check interval NewConnector
// derives from pool_max_lag.
const minLagInterval = 10 * time.Millisecond

// Connect claims a pooled connection for one database/sql operation. It
// waits for one until ctx ends or the pool's claim timeout passes, and
// then fails with an error wrapping [pool.ErrClaimTimeout] that says what
// each backend last did. It returns an error wrapping [driver.ErrBadConn]
// only when the driver found dead (by its ResetSession) each of the
// connections the pool handed it: nothing has reached a server then, and
// database/sql tries again.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn := &conn{c: c}
	if err := cn.bind(ctx); err != nil {
		return nil, err
	}
	return cn, nil
}

// Driver returns the qorb driver: a [*Driver] that belongs to c, so that
// [ConnectorOf] finds c from the [sql.DB] it serves.
func (c *Connector) Driver() driver.Driver { return &c.drv }

// Stats returns a snapshot of the connector's pool.
func (c *Connector) Stats() pool.Stats { return c.pool.Stats() }

// Policy returns the pool policy the connector runs with: its defaults
// filled in, with the fields NewConnector derives (see
// [Settings.Policy]) and the Observer it logs through.
func (c *Connector) Policy() pool.Policy { return c.pool.Policy() }

// SetPolicy changes the pool policy of the running connector, as
// [pool.Pool.SetPolicy] describes: the pool grows at once when a cap goes
// up; when one goes down, idle connections beyond it close at once and
// connections in use close as they are released; timeouts and intervals
// apply from now on. pol is taken as [NewConnector] takes
// Settings.Policy, deriving the same fields when they are left zero, and
// a policy NewConnector would refuse is refused with the same error (the
// connector keeping its policy). It is the counterpart of HikariCP's
// setMaximumPoolSize, setMinimumIdle and setConnectionTimeout, and of
// database/sql's SetMaxOpenConns (which must stay unlimited on a
// database qorb serves: the pool's caps take its place). The observer and logger stay those NewConnector was
// given. To change a few fields:
//
//	pol := c.Policy()
//	pol.MaxSlots = 64
//	err := c.SetPolicy(pol)
func (c *Connector) SetPolicy(pol pool.Policy) error {
	return c.pool.SetPolicy(c.derive(pol))
}

// Pause holds new operations: each waits for a connection, bounded by its
// context and the claim timeout (pool_claim_timeout), while the
// operations already holding one finish. Pause returns once none holds
// one, or, when ctx ends first, with an error wrapping ctx's error; the
// connector stays paused either way until Resume. A [sql.Conn] or
// [sql.Tx] holds its connection until it is closed. It is PgBouncer's
// PAUSE and HikariCP's suspendPool: a planned switchover between Pause
// and Resume shows the application latency instead of errors. See
// [pool.Pool.Pause].
func (c *Connector) Pause(ctx context.Context) error { return c.pool.Pause(ctx) }

// Resume ends a Pause: the waiting operations get their connections,
// oldest first. It is PgBouncer's RESUME and HikariCP's resumePool.
func (c *Connector) Resume() { c.pool.Resume() }

// Drain takes a backend out of service: new operations go to the other
// backends, its idle connections close at once and those in use as they
// are released. It returns once it has no connection left, or, when ctx
// ends first, with an error wrapping ctx's error; the backend stays
// drained either way, until Undrain, also if the resolver drops it and
// lists it again. backend is its address ("host:port", as in Stats and
// on the stats page) or its key ("name@host:port"); every backend it
// names is drained. It is HikariCP's softEvictConnections for one
// backend; see [pool.Pool.Drain].
func (c *Connector) Drain(ctx context.Context, backend string) error {
	keys, err := c.backendKeys(backend)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, c.pool.Drain(ctx, k))
	}
	return errors.Join(errs...)
}

// Undrain puts a backend Drain took out of service back; it starts again
// in slow start (pool_slow_start). backend is as for Drain.
func (c *Connector) Undrain(backend string) error {
	keys, err := c.backendKeys(backend)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, c.pool.Undrain(k))
	}
	return errors.Join(errs...)
}

// backendKeys returns the keys of the pool's backends whose address or
// key is name, or an error wrapping [pool.ErrUnknownBackend].
func (c *Connector) backendKeys(name string) ([]resolver.Key, error) {
	var keys []resolver.Key
	for _, b := range c.pool.Stats().Backends {
		if k := b.Backend.Key(); b.Backend.Addr == name || k.String() == name {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("qorb: %w: %q", pool.ErrUnknownBackend, name)
	}
	return keys, nil
}

// Close stops the connector as [sql.DB.Close] expects: it returns at
// once. Operations that start later fail with an error wrapping
// [pool.ErrClosed]; the resolver and the pool stop, idle connections
// close, and a connection still in use (a [sql.Conn], [sql.Tx] or
// [sql.Rows] not yet closed) closes when it is released. It may be called
// more than once, also while Shutdown waits. It returns nil.
func (c *Connector) Close() error {
	err := c.pool.Close()
	c.stopRouter.Do(c.router.close)
	return err
}

// Shutdown stops the connector gracefully, as [net/http.Server.Shutdown]
// does a server: new operations fail at once, as after Close, and
// Shutdown waits for the connections still in use to be released and
// closes each as it comes back. When ctx ends first, or, if ctx has no
// deadline, when the close timeout (pool_close_timeout, default 5 s)
// passes, it closes those still in use and returns an error wrapping
// ctx's error (context.DeadlineExceeded for the close timeout) that says
// how many it closed. Call it before [sql.DB.Close], whose call of Close
// then finds nothing left to do.
func (c *Connector) Shutdown(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.closeTimeout)
		defer cancel()
	}
	err := c.pool.Shutdown(ctx)
	c.stopRouter.Do(c.router.close)
	return err
}

// physConn is one physical connection in the pool, with the statements
// prepared on it (see stmtcache.go).
type physConn struct {
	dc    driver.Conn
	key   resolver.Key // its backend
	stmts map[string]*cachedStmt
	// uses counts the uses of its statements, for the least recently
	// used; trimmed is stmtRefs.released when its cache was last trimmed.
	uses, trimmed uint64
	// socks are its sockets, nil unless the Opener is a SocketOpener;
	// cut is set once the pool aborted it (see stall.go).
	socks *sockets
	cut   atomic.Bool
}

// openerConnector makes an Opener the pool's Connector: it opens, checks,
// recycles and closes the physical connections, and hands role queries
// and what they read to the router.
type openerConnector struct {
	o     Opener
	r     *router
	reset bool         // pool_reset_session
	cd    credentialed // with Config.Credentials
}

func (oc openerConnector) Connect(ctx context.Context, be resolver.Backend) (*physConn, error) {
	if oc.cd.creds != nil {
		return oc.cd.connect(ctx, be)
	}
	return connect(ctx, oc.o, be)
}

// Role asks the server its role, and, for a database that replicates, its
// position, after each connect and passed health check.
func (oc openerConnector) Role(ctx context.Context, pc *physConn) (resolver.Role, error) {
	return oc.r.observe(ctx, pc)
}

func (oc openerConnector) IsValid(ctx context.Context, pc *physConn) error {
	return oc.o.Ping(ctx, pc.dc)
}

// OnAcquire lets the driver check the session of a connection being
// handed out, as database/sql does before it reuses one
// ([driver.SessionResetter]; go-sql-driver/mysql finds there a connection
// its server has closed). The pool runs it on every claim and claims
// another connection in place of one it fails. Nothing of the operation
// has reached a server then, so its error wraps [driver.ErrBadConn]: when
// every connection a claim takes fails it, database/sql tries again.
func (oc openerConnector) OnAcquire(ctx context.Context, pc *physConn) error {
	s, ok := pc.dc.(driver.SessionResetter)
	if !ok {
		return nil
	}
	err := s.ResetSession(ctx)
	if err == nil {
		return nil
	}
	oc.r.failed(pc, err)
	if errors.Is(err, driver.ErrBadConn) {
		return err
	}
	return fmt.Errorf("%w: session check: %v", driver.ErrBadConn, err)
}

func (oc openerConnector) OnRecycle(ctx context.Context, pc *physConn) error {
	if oc.reset {
		// A full reset forgets prepared statements on the server.
		pc.closeStmts()
	}
	return oc.o.Recycle(ctx, pc.dc, oc.reset)
}

func (oc openerConnector) Close(pc *physConn) error {
	pc.closeStmts()
	return pc.dc.Close()
}

// ConnectorOf returns the Connector behind db, a database opened with
// sql.Open("qorb", ...) or sql.OpenDB with a Connector: to mount its
// stats page (statshttp.Handler) or read its Stats. It claims no
// connection, so it answers at once, also when every backend is down.
// It fails for a database of another driver.
func ConnectorOf(db *sql.DB) (*Connector, error) {
	if d, ok := db.Driver().(*Driver); ok && d.c != nil {
		return d.c, nil
	}
	return nil, fmt.Errorf("qorb: ConnectorOf needs a database opened with qorb, not one of driver %T", db.Driver())
}
