package qorb

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

// OpenConnector parses a qorb DSN and starts a [Connector] for it. The
// DSN's scheme names a dialect registered by importing its package:
//
//	postgres+srv://user:pass@NAME/db?params   (also postgresql+srv)
//	mysql+srv://user:pass@NAME/db?params
//	postgres://user:pass@h1:5432,h2:5433/db?params   (also postgresql, mysql)
//
// A +srv DSN looks up the SRV records of the dialect's service under NAME
// (_postgresql._tcp.NAME, _mysql._tcp.NAME), or of NAME itself when it
// starts with "_"; the others use the hosts listed. A host that is an
// absolute path, percent-encoded, is a Unix socket: PostgreSQL's socket
// directory (postgres://app@%2Fvar%2Frun%2Fpostgresql/app) or MySQL's
// socket file (mysql://app@%2Frun%2Fmysqld%2Fmysqld.sock/app). Errors wrap
// [ErrBadDSN] and never show the password.
func OpenConnector(dsn string) (*Connector, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return NewConnector(cfg)
}

// ParseDSN turns a qorb DSN (see [OpenConnector]) into the [Config] it
// stands for, without starting anything: to add what a DSN cannot say,
// such as an event observer in cfg.Policy.Observer, before
// [NewConnector]. Errors wrap [ErrBadDSN] and never show the password.
func ParseDSN(dsn string) (Config, error) {
	d, err := parseDSN(dsn)
	if err != nil {
		return Config{}, err
	}
	opener, err := d.dialect.Open(d.driver)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrBadDSN, redact(dsn), err)
	}
	var r resolver.Resolver
	switch {
	case d.replicaSRV != "":
		// The DSN's name lists the primary, replica_srv the replicas.
		var p, rs *srv.Resolver
		p, err = srv.New(d.srv, srv.Config{Servers: d.settings.DNSServers, Role: resolver.RolePrimary})
		if err == nil {
			rs, err = srv.New(d.replicaSRV, srv.Config{Servers: d.settings.DNSServers, Role: resolver.RoleReplica})
		}
		r = resolver.Join(p, rs)
	case d.srv != "":
		r, err = srv.New(d.srv, srv.Config{Servers: d.settings.DNSServers})
	default:
		r, err = resolver.NewStatic(d.hosts...)
	}
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrBadDSN, redact(dsn), err)
	}
	return Config{Opener: opener, Resolver: r, Settings: d.settings}, nil
}

// NewStaticConnector starts a [Connector] for a fixed list of backends, as
// a dialect's own constructor does for a DSN in its driver's native form
// once it has taken out qorb's parameters ([TakeSettings]) and the hosts.
// It fails, wrapping [ErrBadDSN], when s is not for a host list (see
// [Settings.ForHosts]) or a backend's address is not "host:port" or is
// listed twice.
func NewStaticConnector(o Opener, backends []resolver.Backend, s Settings) (*Connector, error) {
	if err := s.ForHosts(); err != nil {
		return nil, err
	}
	r, err := resolver.NewStatic(backends...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDSN, err)
	}
	return NewConnector(Config{Opener: o, Resolver: r, Settings: s})
}

// parsedDSN is a DSN taken apart.
type parsedDSN struct {
	dialect Dialect
	srv     string // the SRV name, for a +srv DSN
	// replicaSRV is the SRV name of the replicas (replica_srv), when the
	// primary and the replicas are published apart.
	replicaSRV string
	hosts      []resolver.Backend // the static list otherwise
	driver     DriverConfig
	settings   Settings
}

func parseDSN(dsn string) (parsedDSN, error) {
	var d parsedDSN
	bad := func(format string, args ...any) (parsedDSN, error) {
		return parsedDSN{}, fmt.Errorf("%w: %s: %s", ErrBadDSN, redact(dsn), fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok || scheme == "" {
		return bad("want scheme://[user[:password]@]hosts[/database][?params]")
	}
	d.dialect, ok = lookupDialect(scheme)
	if !ok {
		return bad("no dialect registered for scheme %q (registered: %s; import a dialect package such as github.com/qorb-go/qorb/dialects/pgdialect)",
			scheme, strings.Join(schemes(), ", "))
	}

	authority, pathQuery := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, pathQuery = rest[:i], rest[i:]
	}
	// A '/' or '?' in an unescaped password ends the authority early: it
	// then holds "user:start-of-password", which errors must not quote.
	hideHosts := !strings.Contains(authority, "@") && strings.Contains(pathQuery, "@")
	badHosts := func(format string, args ...any) (parsedDSN, error) {
		if hideHosts {
			return bad("cannot parse the hosts; percent-encode '/', '?' and '@' in the user name and password")
		}
		return bad(format, args...)
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo := authority[:i]
		authority = authority[i+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if d.driver.User, err = url.PathUnescape(user); err != nil {
			return bad("user name: %v", err)
		}
		if hasPass {
			if d.driver.Password, err = url.PathUnescape(pass); err != nil {
				return bad("password is not properly escaped")
			}
		}
	}
	path, query, _ := strings.Cut(pathQuery, "?")
	if path != "" {
		db, err := url.PathUnescape(strings.TrimPrefix(path, "/"))
		if err != nil {
			return bad("database name: %v", err)
		}
		d.driver.Database = db
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return bad("parameters: %v", err)
	}
	if d.settings, err = TakeSettings(params); err != nil {
		return parsedDSN{}, fmt.Errorf("%s: %w", redact(dsn), err)
	}
	d.driver.Params = params

	if authority == "" {
		return bad("no host")
	}
	if strings.HasSuffix(scheme, "+srv") {
		if strings.ContainsAny(authority, ",:") {
			return badHosts("a +srv DSN takes one name without a port, not %q", authority)
		}
		d.srv = srvName(d.dialect, authority)
		if d.settings.ReplicaSRV != "" {
			d.replicaSRV = srvName(d.dialect, d.settings.ReplicaSRV)
		}
		return d, nil
	}
	if err := d.settings.ForHosts(); err != nil {
		return parsedDSN{}, fmt.Errorf("%s: %w", redact(dsn), err)
	}
	if d.dialect.Name() == "mysql" && strings.Contains(authority, "(") {
		// tcp(h:3306) or unix(/path): the driver's own DSN form.
		return badHosts("host %q looks like a go-sql-driver/mysql DSN's net(addr): give such a DSN without %s:// to mysqldialect.NewConnector, or write %s://user@host:port/db (a Unix socket as %s://user@%%2Fpath%%2Fto%%2Fsocket/db)",
			authority, scheme, scheme, scheme)
	}
	hosts := strings.Split(authority, ",")
	for i, h := range hosts {
		if hosts[i], err = url.PathUnescape(h); err != nil {
			return badHosts("host %q: %v", h, err)
		}
	}
	if d.hosts, err = resolver.ParseAddrs(d.dialect.DefaultPort(), hosts...); err != nil {
		return badHosts("%v", err)
	}
	return d, nil
}

// srvName is the SRV name for NAME: the dialect's service under NAME, or
// NAME itself when it starts with "_".
func srvName(d Dialect, name string) string {
	if strings.HasPrefix(name, "_") {
		return name
	}
	return d.Service() + "." + name
}

// redact returns dsn with its password replaced by "xxxxx", for error
// messages. It hides too much rather than too little: a password with an
// unescaped '/' or '?' in it runs to the last '@', and the values of
// parameters such as password and sslpassword are hidden too.
func redact(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return "(unparsable DSN)"
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	// The user information runs to the last '@' of the authority, or of
	// the path when one is there too (an unescaped '/' in the user name
	// or password ends the authority early), or, with none of those, of
	// the whole DSN (an unescaped '?' in the password).
	beforeQuery := len(rest)
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		beforeQuery = i
	}
	at := max(strings.LastIndex(rest[:end], "@"), strings.LastIndex(rest[:beforeQuery], "@"))
	if at < 0 {
		at = strings.LastIndex(rest, "@")
	}
	if at >= 0 {
		if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	if base, query, ok := strings.Cut(rest, "?"); ok {
		params := strings.Split(query, "&")
		for i, p := range params {
			if k, _, ok := strings.Cut(p, "="); ok && secretParam(k) {
				params[i] = k + "=xxxxx"
			}
		}
		rest = base + "?" + strings.Join(params, "&")
	}
	return scheme + "://" + rest
}

// secretParam reports whether the parameter named key, as written in a
// DSN, may hold a secret: its name, decoded as the driver will decode it,
// mentions a password. A key that does not decode is taken for one.
func secretParam(key string) bool {
	dec, err := url.QueryUnescape(key)
	if err != nil {
		return true
	}
	return strings.Contains(strings.ToLower(dec), "password")
}
