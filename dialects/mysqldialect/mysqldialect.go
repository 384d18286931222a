package mysqldialect

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/safefmt"
	"github.com/qorb-go/qorb/resolver"
)

func init() {
	qorb.Register(Dialect{}, "mysql+srv", "mysql")
}

// Errors that [Opener.Recycle] and the other Opener methods return, to be
// matched with [errors.Is].
var (
	// ErrInvalid: the driver reports the connection unusable, because
	// it is closed or a result was not read to the end.
	ErrInvalid = errors.New("mysqldialect: connection is not valid")
	// ErrInTransaction: the connection is inside a transaction (seen
	// only with pool_reset_session).
	ErrInTransaction = errors.New("mysqldialect: connection is inside a transaction")
	// ErrForeignConn: the connection was not opened by an Opener of this
	// package.
	ErrForeignConn = errors.New("mysqldialect: not a go-sql-driver/mysql connection")
)

// placeholderAddr stands in for the backends' addresses while a
// configuration is parsed. Its host is in the reserved .invalid domain,
// so it never resolves; every connection replaces it with a backend's
// address and name.
const (
	placeholderHost = "qorb.invalid"
	placeholderAddr = placeholderHost + ":3306"
)

// Dialect is the MySQL dialect, for MySQL and MariaDB. It is registered
// with qorb for the schemes mysql+srv and mysql when the package is
// imported.
type Dialect struct{}

var _ qorb.Dialect = Dialect{}

// Name returns "mysql".
func (Dialect) Name() string { return "mysql" }

// Service returns "_mysql._tcp", the SRV service of a +srv DSN.
func (Dialect) Service() string { return "_mysql._tcp" }

// DefaultPort returns 3306.
func (Dialect) DefaultPort() uint16 { return 3306 }

// Open returns an [*Opener] for cfg, as [NewOpener] does.
func (Dialect) Open(cfg qorb.DriverConfig) (qorb.Opener, error) {
	o, err := NewOpener(cfg)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Opener opens connections to MySQL backends through go-sql-driver/mysql's
// connector, and checks, recycles and asks the role and (on MariaDB) the
// replication position of the connections it opened (it is a
// [qorb.Replicator]). It is safe for concurrent use; each connection is used by one
// goroutine at a time.
type Opener struct {
	// cfg is normalized with placeholderAddr as its address. It is never
	// modified: each connection gets a clone.
	cfg *mysql.Config
	// stepwise is set once a server lacked @@in_transaction or
	// RELEASE_ALL_LOCKS(): resets then take one step at a time.
	stepwise atomic.Bool
}

var _ qorb.Opener = (*Opener)(nil)

// NewOpener returns an Opener for the user, password, database and
// go-sql-driver/mysql DSN parameters of cfg (such as tls, parseTime,
// timeout, or a system variable to set). It checks the parameters with the driver's own
// parser ([mysql.ParseDSN], from [mysql.NewConfig]'s defaults) and fails
// for those it rejects, such as a bad boolean or duration or an
// unregistered TLS configuration name. Errors never show a password.
func NewOpener(cfg qorb.DriverConfig) (*Opener, error) {
	query, err := encodeParams(cfg.Params)
	if err != nil {
		return nil, err
	}
	dsn := "tcp(" + placeholderAddr + ")/"
	if query != "" {
		dsn += "?" + query
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqldialect: driver parameters: %s", scrub(err.Error(), cfg.Password))
	}
	mc.User, mc.Passwd, mc.DBName = cfg.User, cfg.Password, cfg.Database
	return &Opener{cfg: mc}, nil
}

// String describes the Opener by its user and database, never its
// password: "mysqldialect.Opener{user=app database=app}".
func (o *Opener) String() string {
	if o == nil || o.cfg == nil {
		return "mysqldialect.Opener{}"
	}
	return fmt.Sprintf("mysqldialect.Opener{user=%s database=%s}", o.cfg.User, o.cfg.DBName)
}

// GoString returns String, so that %#v shows no password either.
func (o *Opener) GoString() string { return o.String() }

// Format writes String for every verb (quoted for %q), so that no verb
// prints the driver configuration, which holds the password.
func (o *Opener) Format(f fmt.State, verb rune) { safefmt.Format(f, verb, o.String()) }

// rawParams are the parameters go-sql-driver/mysql (v1.10) reads without
// unescaping their values; it unescapes the others.
var rawParams = map[string]bool{
	"allowAllFiles": true, "allowCleartextPasswords": true, "allowFallbackToPlaintext": true,
	"allowNativePasswords": true, "allowOldPasswords": true, "checkConnLiveness": true,
	"clientFoundRows": true, "charset": true, "collation": true, "columnsWithAlias": true,
	"compress": true, "interpolateParams": true, "multiStatements": true, "parseTime": true,
	"timeTruncate": true, "readTimeout": true, "rejectReadOnly": true, "timeout": true,
	"writeTimeout": true, "maxAllowedPacket": true,
}

// encodeParams writes params as the query of a go-sql-driver/mysql DSN,
// escaping the values the driver unescapes and refusing, for the others,
// characters the DSN cannot carry.
func encodeParams(params url.Values) (string, error) {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if err := checkParam(k); err != nil {
			return "", err
		}
		for _, v := range params[k] {
			if rawParams[k] {
				if strings.ContainsAny(v, "&/") {
					return "", fmt.Errorf("mysqldialect: parameter %s: value cannot contain '&' or '/'", k)
				}
			} else {
				v = url.QueryEscape(v)
			}
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
		}
	}
	return b.String(), nil
}

// checkParam rejects the parameters that must not reach the driver.
func checkParam(k string) error {
	switch {
	case k == "strict":
		// The driver panics on it.
		return errors.New("mysqldialect: parameter strict was removed from go-sql-driver/mysql; set sql_mode instead")
	case k == "password":
		// The driver would run SET password=... on every connection.
		return errors.New("mysqldialect: parameter password: put the password in the user information (user:password@)")
	case qorb.OwnParam(k):
		return fmt.Errorf("mysqldialect: parameter %s is qorb's own and must not reach the driver", k)
	case k == "" || strings.ContainsAny(k, "&=/?"):
		return fmt.Errorf("mysqldialect: parameter name %q cannot be written in a DSN", k)
	}
	return nil
}

// scrub masks password in msg.
func scrub(msg, password string) string {
	if password == "" {
		return msg
	}
	return strings.ReplaceAll(msg, password, "xxxxx")
}

// Connect opens a connection to b through [mysql.NewConnector]. It dials
// b.Addr and, with TLS, sends and verifies b.Host (the host of b.Addr when
// b.Host is empty), unless the TLS configuration names a server itself.
// ctx bounds the whole connection setup, TLS and authentication included.
func (o *Opener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	return o.ConnectSockets(ctx, b, nil)
}

var _ qorb.SocketOpener = (*Opener)(nil)

// ConnectSockets is Connect, calling opened, unless it is nil, with the
// network connection the driver dials (for tcp and unix, through a
// [net.Dialer] bounded by the DSN's timeout, as the driver's own dial).
// A network registered with [mysql.RegisterDialContext] dials through
// the driver's registry, which qorb cannot reach: opened is not called
// for it, so its sockets cannot be cut when the backend stalls.
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
		cfg.Passwd = cr.Password
	}
	if dial := cfg.DialFunc; opened != nil && (dial != nil || stdNetwork(cfg.Net)) {
		if dial == nil {
			var d net.Dialer
			dial = d.DialContext
		}
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err == nil {
				opened(c)
			}
			return c, err
		}
	}
	cn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqldialect: connect to %s: %w", b, err)
	}
	c, err := cn.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("mysqldialect: connect to %s: %w", b, err)
	}
	return c, nil
}

// stdNetwork reports whether the driver dials network with a plain
// [net.Dialer] when no dial function is set.
func stdNetwork(network string) bool {
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
		return true
	}
	return false
}

// configFor returns a clone of the Opener's configuration that connects to
// b: over TCP (the DSN's tcp, tcp4 or tcp6) to its address, with TLS
// verifying its name; or to a Unix socket, or through another network's
// dialer, where the TLS name is left to the driver.
func (o *Opener) configFor(b resolver.Backend) (*mysql.Config, error) {
	cfg := o.cfg.Clone() // clones TLS too
	if b.Network != "" {
		cfg.Net, cfg.Addr = b.Network, b.Addr
		if b.Network == resolver.NetworkUnix {
			// A socket from a qorb DSN's host list comes with a port,
			// which a MySQL socket has no use for.
			if path, _, err := net.SplitHostPort(b.Addr); err == nil && strings.HasPrefix(path, "/") {
				cfg.Addr = path
			}
		}
		if t := cfg.TLS; t != nil && t.ServerName == placeholderHost {
			t.ServerName = ""
		}
		return cfg, nil
	}
	host, p, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return nil, fmt.Errorf("mysqldialect: backend address %q: %w", b.Addr, err)
	}
	if port, err := strconv.ParseUint(p, 10, 16); err != nil || port == 0 || host == "" {
		return nil, fmt.Errorf("mysqldialect: backend address %q: want host:port with a port from 1 to 65535", b.Addr)
	}
	name := b.Host
	if name == "" {
		name = host
	}
	cfg.Addr = b.Addr
	if t := cfg.TLS; t != nil && (t.ServerName == "" || t.ServerName == placeholderHost) {
		// Set before NewConnector normalizes the configuration, which
		// would take the name from the address.
		t.ServerName = name
	}
	return cfg, nil
}

// Ping checks c with a round trip to the server (COM_PING).
func (o *Opener) Ping(ctx context.Context, c driver.Conn) error {
	p, ok := c.(driver.Pinger)
	if !ok {
		return fmt.Errorf("%w: %T", ErrForeignConn, c)
	}
	return p.Ping(ctx)
}

// Recycle decides whether c may be reused. Without reset
// (pool_reset_session) it does no I/O and fails with [ErrInvalid] for a connection the driver
// reports unusable. With it, it also rejects a connection inside a
// transaction with [ErrInTransaction] and releases the session's locks;
// the package documentation says what that does and does not reset.
func (o *Opener) Recycle(ctx context.Context, c driver.Conn, reset bool) error {
	v, ok := c.(driver.Validator)
	if !ok {
		return fmt.Errorf("%w: %T", ErrForeignConn, c)
	}
	if !v.IsValid() {
		return ErrInvalid
	}
	if !reset {
		return nil
	}
	if err := o.resetSession(ctx, c); err != nil {
		if errors.Is(err, ErrInTransaction) {
			return err
		}
		return fmt.Errorf("mysqldialect: reset session: %w", err)
	}
	return nil
}

// MySQL error numbers that say the server lacks what a reset uses.
const (
	errUnknownSystemVariable = 1193 // ER_UNKNOWN_SYSTEM_VARIABLE
	errNoSuchFunction        = 1305 // ER_SP_DOES_NOT_EXIST
)

func isServerError(err error, numbers ...uint16) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	for _, n := range numbers {
		if me.Number == n {
			return true
		}
	}
	return false
}

// resetSession does what it can of a session reset; see the package
// documentation.
func (o *Opener) resetSession(ctx context.Context, c driver.Conn) error {
	if !o.stepwise.Load() {
		row, err := queryRow(ctx, c, "SELECT @@in_transaction, RELEASE_ALL_LOCKS()")
		switch {
		case err == nil:
			if err := notInTransaction(row[0]); err != nil {
				return err
			}
			return execute(ctx, c, "UNLOCK TABLES")
		case isServerError(err, errUnknownSystemVariable, errNoSuchFunction):
			o.stepwise.Store(true)
		default:
			return err
		}
	}
	// One step at a time, each where the server has it.
	row, err := queryRow(ctx, c, "SELECT @@in_transaction")
	switch {
	case err == nil:
		if err := notInTransaction(row[0]); err != nil {
			return err
		}
	case isServerError(err, errUnknownSystemVariable):
		// No way to tell: end whatever transaction there is, never
		// committing it.
		if err := execute(ctx, c, "ROLLBACK"); err != nil {
			return err
		}
	default:
		return err
	}
	if err := execute(ctx, c, "UNLOCK TABLES"); err != nil {
		return err
	}
	if _, err := queryRow(ctx, c, "SELECT RELEASE_ALL_LOCKS()"); err != nil && !isServerError(err, errNoSuchFunction) {
		return err
	}
	return nil
}

// notInTransaction fails unless v, the value of @@in_transaction, is 0.
func notInTransaction(v driver.Value) error {
	inTx, err := asInt(v)
	if err != nil {
		return fmt.Errorf("@@in_transaction: %w", err)
	}
	if inTx != 0 {
		return ErrInTransaction
	}
	return nil
}

// Role reads @@global.read_only: a read-only server is
// [resolver.RoleReplica], any other [resolver.RolePrimary]. A server that
// answers but cannot say (the query fails with a server error, as on a
// proxy or an admin console, or returns no row or no integer) is
// [resolver.RoleUnknown], with no error: it stays usable for any role.
// Only a connection that failed is an error.
func (o *Opener) Role(ctx context.Context, c driver.Conn) (resolver.Role, error) {
	row, err := queryRow(ctx, c, "SELECT @@global.read_only")
	switch {
	case errors.Is(err, errNoRow):
		return resolver.RoleUnknown, nil
	case err != nil:
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			if v, ok := c.(driver.Validator); !ok || v.IsValid() {
				return resolver.RoleUnknown, nil // the server answered, with an error
			}
		}
		return resolver.RoleUnknown, fmt.Errorf("mysqldialect: role: %w", err)
	}
	ro, err := asInt(row[0])
	switch {
	case err != nil:
		return resolver.RoleUnknown, nil
	case ro != 0:
		return resolver.RoleReplica, nil
	}
	return resolver.RolePrimary, nil
}

// errNoRow: a query that must return a row returned none.
var errNoRow = errors.New("returned no row")

// queryRow runs query on c and returns its first row, which it must have;
// without one it fails with errNoRow.
func queryRow(ctx context.Context, c driver.Conn, query string) (row []driver.Value, err error) {
	q, ok := c.(driver.QueryerContext)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrForeignConn, c)
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}()
	row = make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(row); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: %w", query, errNoRow)
		}
		return nil, err
	}
	return row, nil
}

// execute runs query on c.
func execute(ctx context.Context, c driver.Conn, query string) error {
	e, ok := c.(driver.ExecerContext)
	if !ok {
		return fmt.Errorf("%w: %T", ErrForeignConn, c)
	}
	_, err := e.ExecContext(ctx, query, nil)
	return err
}

// asInt reads an integer column, which the driver returns as an int64 or,
// in the text protocol, as digits.
func asInt(v driver.Value) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case uint64:
		return int64(v), nil
	case []byte:
		return strconv.ParseInt(string(v), 10, 64)
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("want an integer, got %T", v)
}

// errNeedReprepare is ER_NEED_REPREPARE: "Prepared statement needs to be
// re-prepared".
const errNeedReprepare = 1615

var _ qorb.StaleChecker = (*Opener)(nil)

// StaleStatement reports whether err is the server's refusal to run a
// prepared statement whose tables changed since it was prepared (error
// 1615, which MySQL and MariaDB raise when their own re-preparation gives
// up, before the statement runs): qorb deallocates the statement and
// prepares it again (see [qorb.StaleChecker]).
func (o *Opener) StaleStatement(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errNeedReprepare
}
