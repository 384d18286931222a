package pgdialect

import (
	"context"
	"crypto/tls"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/safefmt"
	"github.com/qorb-go/qorb/resolver"
)

func init() {
	qorb.Register(Dialect{}, "postgres+srv", "postgresql+srv", "postgres", "postgresql")
}

// Errors that [Opener.Recycle] and the other Opener methods return, to be
// matched with [errors.Is].
var (
	// ErrClosed: pgx reports the connection closed.
	ErrClosed = errors.New("pgdialect: connection is closed")
	// ErrBusy: a query's results were not read to the end.
	ErrBusy = errors.New("pgdialect: connection is busy")
	// ErrInTransaction: the connection is inside a transaction, or a
	// failed one that was never rolled back.
	ErrInTransaction = errors.New("pgdialect: connection is inside a transaction")
	// ErrForeignConn: the connection was not opened by an Opener of this
	// package, nor does it wrap one that was.
	ErrForeignConn = errors.New("pgdialect: not a pgx connection")
)

// placeholderHost stands in for the backends' hosts while a configuration
// is parsed. It is in the reserved .invalid domain, so it never resolves;
// every connection replaces it with a backend's address and name.
const placeholderHost = "qorb.invalid"

// Dialect is the PostgreSQL dialect. It is registered with qorb for the
// schemes postgres+srv, postgresql+srv, postgres and postgresql when the
// package is imported.
type Dialect struct{}

var _ qorb.Dialect = Dialect{}

// Name returns "postgres".
func (Dialect) Name() string { return "postgres" }

// Service returns "_postgresql._tcp", the SRV service of a +srv DSN.
func (Dialect) Service() string { return "_postgresql._tcp" }

// DefaultPort returns 5432.
func (Dialect) DefaultPort() uint16 { return 5432 }

// Open returns an [*Opener] for cfg, as [NewOpener] does.
func (Dialect) Open(cfg qorb.DriverConfig) (qorb.Opener, error) {
	o, err := NewOpener(cfg)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Opener opens connections to PostgreSQL backends through pgx's
// database/sql connector, and checks, recycles and asks the role and
// replication position of the connections it opened (it is a
// [qorb.Replicator]). It is safe for concurrent use; each connection
// is used by one goroutine at a time.
//
// The round trips of Ping, Recycle, Role and Position end at their
// context's deadline, but a context cancelled while one is under way lets it
// finish: pgx meets cancellation by cutting the connection's I/O short,
// which leaves a TLS connection unable to send even its Terminate message,
// and the connection and a goroutine of pgx then linger for up to 15 s.
// A context already done when they start fails them at once.
type Opener struct {
	// cfg is parsed with placeholderHost as its only host. It is never
	// modified: each connection gets a copy.
	cfg *pgx.ConnConfig
}

var _ qorb.Opener = (*Opener)(nil)

// NewOpener returns an Opener for the user, password, database and pgx
// connection parameters of cfg (such as sslmode, sslrootcert,
// connect_timeout, application_name). It checks the parameters with [pgx.ParseConfig]
// and fails for those pgx rejects; parameters pgx does not know are sent
// to the server as run-time parameters when connecting, as pgx does. The
// host list belongs to the resolver, so host, hostaddr and port are
// errors here, as are qorb's own parameters. Errors never show a password.
func NewOpener(cfg qorb.DriverConfig) (*Opener, error) {
	var cs connString
	cs.add("host", placeholderHost)
	if cfg.User != "" {
		cs.add("user", cfg.User)
	}
	if cfg.Database != "" {
		cs.add("dbname", cfg.Database)
	}
	password := cfg.Password
	keys := make([]string, 0, len(cfg.Params))
	for k := range cfg.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := cfg.Params[k]
		switch {
		case k == "host" || k == "hostaddr" || k == "port":
			return nil, fmt.Errorf("pgdialect: parameter %s: the hosts come from the DSN's host list or SRV records (a Unix socket directory as a percent-encoded host: postgres://user@%%2Fvar%%2Frun%%2Fpostgresql/db)", k)
		case qorb.OwnParam(k):
			return nil, fmt.Errorf("pgdialect: parameter %s is qorb's own and must not reach the driver", k)
		case !validKeyword(k):
			return nil, fmt.Errorf("pgdialect: parameter name %q is not a connection-string keyword", k)
		case k == "password":
			// The last one wins, as in a libpq URI, where a password
			// parameter overrides the one in the user information.
			if len(vs) > 0 {
				password = vs[len(vs)-1]
			}
			continue
		}
		for _, v := range vs {
			cs.add(k, v)
		}
	}
	secrets := append(cs.secrets, password)
	pc, err := pgx.ParseConfig(cs.String())
	if err != nil {
		return nil, parseError("pgdialect: driver parameters", err, secrets)
	}
	if password != "" {
		pc.Password = password
	}
	return newOpener(pc), nil
}

// String describes the Opener by its user and database, never its
// password: "pgdialect.Opener{user=app database=app}".
func (o *Opener) String() string {
	if o == nil || o.cfg == nil {
		return "pgdialect.Opener{}"
	}
	return fmt.Sprintf("pgdialect.Opener{user=%s database=%s}", o.cfg.User, o.cfg.Database)
}

// GoString returns String, so that %#v shows no password either.
func (o *Opener) GoString() string { return o.String() }

// Format writes String for every verb (quoted for %q), so that no verb
// prints the driver configuration, which holds the password.
func (o *Opener) Format(f fmt.State, verb rune) { safefmt.Format(f, verb, o.String()) }

// newOpener returns an Opener over cfg, which was parsed with
// placeholderHost as its host. It takes cfg over.
func newOpener(cfg *pgx.ConnConfig) *Opener {
	// qorb routes operations by role; pgx must not reject backends at
	// connect time for target_session_attrs (or PGTARGETSESSIONATTRS).
	cfg.ValidateConnect = nil
	return &Opener{cfg: cfg}
}

// Connect opens a connection to b through [stdlib.GetConnector]. It dials
// b.Addr and, where TLS sends or verifies a server name, uses b.Host (the
// host of b.Addr when b.Host is empty). ctx bounds the whole connection
// setup, TLS and authentication included. The connection is a
// *stdlib.Conn.
func (o *Opener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	return o.ConnectSockets(ctx, b, nil)
}

var _ qorb.SocketOpener = (*Opener)(nil)

// ConnectSockets is Connect, calling opened, unless it is nil, with each
// network connection pgx dials while connecting (one per host it tries),
// through its own dialer (which honours connect_timeout).
func (o *Opener) ConnectSockets(ctx context.Context, b resolver.Backend, opened func(net.Conn)) (driver.Conn, error) {
	return o.connect(ctx, b, nil, opened)
}

var _ qorb.CredentialsOpener = (*Opener)(nil)

// ConnectAs is ConnectSockets, logging in with cr's password and, unless
// it is empty, cr's user, in place of the DSN's (see
// [qorb.Config.Credentials]).
func (o *Opener) ConnectAs(ctx context.Context, b resolver.Backend, cr qorb.Credentials, opened func(net.Conn)) (driver.Conn, error) {
	return o.connect(ctx, b, &cr, opened)
}

// connect opens a connection to b, with cr's user and password when cr is
// not nil, calling opened, unless it is nil, with each socket dialed.
func (o *Opener) connect(ctx context.Context, b resolver.Backend, cr *qorb.Credentials, opened func(net.Conn)) (driver.Conn, error) {
	cfg, err := o.configFor(b)
	if err != nil {
		return nil, err
	}
	if cr != nil {
		if cr.User != "" {
			cfg.User = cr.User
		}
		cfg.Password = cr.Password
	}
	if dial := cfg.DialFunc; opened != nil && dial != nil {
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err == nil {
				opened(c)
			}
			return c, err
		}
	}
	c, err := stdlib.GetConnector(*cfg, stdlib.OptionShouldPing(neverPing)).Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgdialect: connect to %s: %w", b, err)
	}
	return c, nil
}

// neverPing keeps stdlib from pinging a connection in ResetSession: the
// pool health-checks idle connections itself.
func neverPing(context.Context, stdlib.ShouldPingParams) bool { return false }

// configFor returns a copy of the Opener's configuration that connects to
// b: b's host and port in the main entry and every fallback, and b's name
// in each TLS configuration that sends or verifies a server name.
func (o *Opener) configFor(b resolver.Backend) (*pgx.ConnConfig, error) {
	switch b.Network {
	case "", resolver.NetworkUnix:
	default:
		return nil, fmt.Errorf("pgdialect: backend %s: network %q: pgx dials TCP and Unix sockets only", b, b.Network)
	}
	host, port, err := splitAddr(b.Addr)
	if err != nil {
		return nil, err
	}
	name := b.Host
	if name == "" {
		name = host
	}
	cfg := o.cfg.Copy()
	cfg.Host, cfg.Port = host, port
	if strings.HasPrefix(host, "/") {
		// A Unix socket directory: no TLS, as in pgx, and so no
		// fallback without it either.
		cfg.TLSConfig, cfg.Fallbacks = nil, nil
		return cfg, nil
	}
	cfg.TLSConfig = withServerName(cfg.TLSConfig, name)
	for _, fb := range cfg.Fallbacks {
		fb.Host, fb.Port = host, port
		fb.TLSConfig = withServerName(fb.TLSConfig, name)
	}
	return cfg, nil
}

// withServerName returns a clone of t that sends and verifies name, if t
// had a server name: the placeholder, since the configuration was parsed
// for it. pgx leaves the name empty for sslsni=0 (unless verify-full needs
// it), and then so does withServerName.
func withServerName(t *tls.Config, name string) *tls.Config {
	if t == nil {
		return nil
	}
	t = t.Clone()
	if t.ServerName != "" {
		t.ServerName = name
	}
	return t
}

// splitAddr splits a backend's "host:port" address.
func splitAddr(addr string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("pgdialect: backend address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 || host == "" {
		return "", 0, fmt.Errorf("pgdialect: backend address %q: want host:port with a port from 1 to 65535", addr)
	}
	return host, uint16(port), nil
}

// conn returns the pgx connection under c: a connection Connect opened,
// or one that wraps it and reaches it as [stdlib.Conn.Conn] does (the
// native pgx pool's connections).
func conn(c driver.Conn) (*pgx.Conn, error) {
	if sc, ok := c.(*stdlib.Conn); ok {
		return sc.Conn(), nil
	}
	if w, ok := c.(interface{ Conn() *pgx.Conn }); ok {
		return w.Conn(), nil
	}
	return nil, fmt.Errorf("%w: %T", ErrForeignConn, c)
}

// Ping checks c with a round trip to the server (an empty query).
func (o *Opener) Ping(ctx context.Context, c driver.Conn) error {
	pc, err := conn(c)
	if err != nil {
		return err
	}
	ctx, cancel, err := roundTrip(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return pc.Ping(ctx)
}

// roundTrip returns the context for one of the Opener's own round trips
// on a connection: ctx's deadline without its cancellation, or ctx itself
// if it has no deadline. It fails if ctx is done already.
//
// pgx meets a cancelled context by setting a deadline in the past on the
// connection. If that cuts a write short, a TLS connection cannot write
// again, not even the Terminate message, and pgx's closing goroutine
// then waits up to 15 s for the server to hang up, while the server waits
// for the client: a goroutine and a server session outlive the pool that
// closed the connection. The pool cancels its health checks and
// recycles when it closes, so they let their round trip finish instead,
// which takes one round trip, or until the deadline.
func roundTrip(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	d, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), d)
	return ctx, cancel, nil
}

// Recycle decides whether c may be reused. Without reset
// (pool_reset_session) it does no I/O: it fails with [ErrClosed],
// [ErrBusy] or [ErrInTransaction] for a connection pgx reports closed,
// busy or inside a transaction. With reset it also resets the session with DISCARD ALL and makes pgx forget
// the statements it prepared (see the package documentation).
func (o *Opener) Recycle(ctx context.Context, c driver.Conn, reset bool) error {
	pc, err := conn(c)
	if err != nil {
		return err
	}
	switch pg := pc.PgConn(); {
	case pc.IsClosed():
		return ErrClosed
	case pg.IsBusy():
		return ErrBusy
	case pg.TxStatus() != 'I':
		return fmt.Errorf("%w (status %q)", ErrInTransaction, pg.TxStatus())
	}
	if !reset {
		return nil
	}
	ctx, cancel, err := roundTrip(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := pc.PgConn().Exec(ctx, "DISCARD ALL").ReadAll(); err != nil {
		return fmt.Errorf("pgdialect: reset session: %w", err)
	}
	// The server forgot every prepared statement; so must pgx, or its
	// statement cache would name statements that no longer exist.
	if err := pc.DeallocateAll(ctx); err != nil {
		return fmt.Errorf("pgdialect: reset session: %w", err)
	}
	return nil
}

// Role asks the server whether it is in recovery: a standby is
// [resolver.RoleReplica], any other server [resolver.RolePrimary]. A
// server that answers but cannot say (the query fails, as on a proxy or
// an admin console, or returns no row or no boolean) is
// [resolver.RoleUnknown], with no error: it stays usable for any role.
// Only a connection that failed is an error. It uses the simple protocol,
// so it prepares nothing on the connection.
func (o *Opener) Role(ctx context.Context, c driver.Conn) (resolver.Role, error) {
	pc, err := conn(c)
	if err != nil {
		return resolver.RoleUnknown, err
	}
	ctx, cancel, err := roundTrip(ctx)
	if err != nil {
		return resolver.RoleUnknown, err
	}
	defer cancel()
	res, err := pc.PgConn().Exec(ctx, "SELECT pg_is_in_recovery()").ReadAll()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !pc.IsClosed() {
			return resolver.RoleUnknown, nil // the server answered, with an error
		}
		return resolver.RoleUnknown, fmt.Errorf("pgdialect: role: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return resolver.RoleUnknown, nil
	}
	switch string(res[0].Rows[0][0]) {
	case "t":
		return resolver.RoleReplica, nil
	case "f":
		return resolver.RolePrimary, nil
	}
	return resolver.RoleUnknown, nil
}

var _ qorb.StaleChecker = (*Opener)(nil)

// StaleStatement reports whether err is PostgreSQL's refusal to run a
// prepared statement whose result type a schema change altered ("cached
// plan must not change result type", SQLSTATE 0A000, raised before the
// statement runs): qorb deallocates the statement and prepares it again
// (see [qorb.StaleChecker]). SQLSTATE 0A000 alone means any unsupported
// feature, so the message is compared too.
func (o *Opener) StaleStatement(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "0A000" && strings.Contains(pe.Message, "cached plan must not change result type")
}
