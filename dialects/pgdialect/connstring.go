package pgdialect

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/resolver"
)

// NewConnector starts a qorb connector for a pgx connection string, in
// keyword/value form ("host=10.0.0.1,10.0.0.2 port=5432 user=app
// dbname=app") or URL form ("postgres://app@10.0.0.1,10.0.0.2:5433/app"),
// exactly as pgx takes it. The hosts it lists (or PGHOST, or pgx's
// default) are the backends, a static list; every host gets a connection
// of its own, so a second host is a backend, not a fallback. A host that
// is a directory ("host=/var/run/postgresql") is a Unix socket backend,
// reached without TLS as pgx does.
//
// qorb's own parameters ([qorb.OwnParam]) are taken out before pgx sees
// the string: target_session_attrs sets the connector's default role
// instead of making pgx reject backends. dns_server and replica_srv are
// errors, since nothing is looked up in SRV records.
//
// Errors wrap [qorb.ErrBadDSN] and never show a password. The caller
// closes the connector, or the *sql.DB given it.
func NewConnector(dsn string) (*qorb.Connector, error) {
	cfg, err := ParseConnString(dsn)
	if err != nil {
		return nil, err
	}
	return qorb.NewConnector(cfg)
}

// ParseConnString turns a pgx connection string into the [qorb.Config]
// it stands for, as [NewConnector] reads it, without starting anything:
// an [*Opener], a static resolver of the hosts it lists, and qorb's
// settings. Errors wrap [qorb.ErrBadDSN] and never show a password.
func ParseConnString(dsn string) (qorb.Config, error) {
	n, err := parseNative(dsn)
	if err != nil {
		return qorb.Config{}, err
	}
	if err := n.settings.ForHosts(); err != nil {
		return qorb.Config{}, err
	}
	r, err := resolver.NewStatic(n.backends...)
	if err != nil {
		return qorb.Config{}, fmt.Errorf("%w: %v", qorb.ErrBadDSN, err)
	}
	return qorb.Config{Opener: n.opener, Resolver: r, Settings: n.settings}, nil
}

// native is a pgx connection string taken apart.
type native struct {
	opener   *Opener
	backends []resolver.Backend
	settings qorb.Settings
}

// parseNative takes qorb's parameters out of a pgx connection string and
// parses the rest with pgx twice: once as it is, for the hosts and the
// password, and once with placeholderHost as its only host, for the
// Opener's configuration.
func parseNative(dsn string) (native, error) {
	bad := func(msg string) (native, error) {
		return native{}, fmt.Errorf("%w: pgdialect: %s", qorb.ErrBadDSN, msg)
	}
	isURL := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	var (
		base    string
		pairs   []pair
		secrets []string
	)
	if isURL {
		base, pairs, secrets = splitURL(dsn)
	} else {
		var err error
		if pairs, err = splitKeywords(dsn); err != nil {
			return bad(err.Error())
		}
	}
	params := url.Values{}
	for _, p := range pairs {
		params[p.key] = append(params[p.key], p.value)
		if p.key == "password" || p.key == "sslpassword" {
			secrets = append(secrets, p.value)
		}
	}
	settings, err := qorb.TakeSettings(params)
	if err != nil {
		return native{}, err
	}
	var kept []pair
	for _, p := range pairs {
		if _, ok := params[p.key]; ok {
			kept = append(kept, p)
		}
	}
	override := []pair{
		{key: "host", value: placeholderHost, raw: "host=" + placeholderHost},
		{key: "port", value: "5432", raw: "port=5432"},
	}

	cfg, err := pgx.ParseConfig(join(isURL, base, kept))
	if err != nil {
		return bad(parseMessage(err, secrets))
	}
	tmpl, err := pgx.ParseConfig(join(isURL, base, append(kept, override...)))
	if err != nil {
		return bad(parseMessage(err, secrets))
	}
	// The first host's password, from .pgpass if not from the string.
	tmpl.Password = cfg.Password

	var backends []resolver.Backend
	seen := map[string]bool{}
	add := func(host string, port uint16) {
		b := resolver.Backend{Host: host, Addr: net.JoinHostPort(host, strconv.Itoa(int(port))), Weight: 1}
		if strings.HasPrefix(host, "/") {
			// A Unix socket directory, as libpq takes it.
			b.Network, b.Addr = resolver.NetworkUnix, host+":"+strconv.Itoa(int(port))
		}
		if !seen[b.Addr] {
			seen[b.Addr] = true
			backends = append(backends, b)
		}
	}
	add(cfg.Host, cfg.Port)
	for _, fb := range cfg.Fallbacks {
		add(fb.Host, fb.Port)
	}
	for _, b := range backends {
		if err := b.Validate(); err != nil {
			return bad(fmt.Sprintf("host %q: %v", b.Host, err))
		}
	}
	return native{opener: newOpener(tmpl), backends: backends, settings: settings}, nil
}

// pair is one parameter of a connection string.
type pair struct {
	key, value string // unescaped
	raw        string // as written (kept for URLs only)
}

// join puts a connection string together again from its parameters: a
// URL's as they were written, a keyword/value string's quoted anew, since
// an unquoted empty value takes the next parameter as its value unless it
// is the last.
func join(isURL bool, base string, pairs []pair) string {
	if !isURL {
		var cs connString
		for _, p := range pairs {
			cs.add(p.key, p.value)
		}
		return cs.String()
	}
	raws := make([]string, len(pairs))
	for i, p := range pairs {
		raws[i] = p.raw
	}
	if len(raws) == 0 {
		return base
	}
	return base + "?" + strings.Join(raws, "&")
}

// splitURL splits a postgres:// URL into what comes before its query and
// the query's parameters, and returns the password of its user
// information, as written and decoded. It finds the user information and
// the query where libpq does; what it cannot decode it leaves for pgx to
// reject.
func splitURL(dsn string) (base string, pairs []pair, secrets []string) {
	_, rest, _ := strings.Cut(dsn, "://")
	start := len(dsn) - len(rest)
	// As libpq does, look for the user information up to the first '/',
	// so a '?' in a password does not start the query.
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		if _, pw, ok := strings.Cut(rest[:i], ":"); ok && pw != "" {
			secrets = append(secrets, pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				secrets = append(secrets, dec)
			}
		}
		start += i + 1
	}
	q := strings.IndexByte(dsn[start:], '?')
	if q < 0 {
		return dsn, nil, secrets
	}
	base, query := dsn[:start+q], dsn[start+q+1:]
	for _, raw := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(raw, "=")
		p := pair{key: k, value: v, raw: raw}
		// libpq does not decode '+' as a space.
		if dec, err := url.PathUnescape(k); err == nil {
			p.key = dec
		}
		if dec, err := url.PathUnescape(v); err == nil {
			p.value = dec
		}
		pairs = append(pairs, p)
	}
	return base, pairs, secrets
}

// splitKeywords splits a keyword/value connection string into its
// parameters, by libpq's rules: keyword = value, the value either quoted
// with single quotes or running to the next white space, a backslash
// taking the next character literally in both. Its errors give byte
// offsets, never text, which could be part of a password.
func splitKeywords(s string) ([]pair, error) {
	var pairs []pair
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return pairs, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("keyword/value syntax: want keyword=value at byte %d", start)
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			open := i
			i++
			for {
				if i == len(s) {
					return nil, fmt.Errorf("keyword/value syntax: quote at byte %d is not closed", open)
				}
				c := s[i]
				i++
				if c == '\'' {
					break
				}
				if c == '\\' {
					if i == len(s) {
						return nil, fmt.Errorf("keyword/value syntax: quote at byte %d is not closed", open)
					}
					c = s[i]
					i++
				}
				val.WriteByte(c)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				c := s[i]
				i++
				if c == '\\' {
					if i == len(s) {
						break // a backslash at the end escapes nothing
					}
					c = s[i]
					i++
				}
				val.WriteByte(c)
			}
		}
		pairs = append(pairs, pair{key: key, value: val.String(), raw: s[start:i]})
	}
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// connString builds a keyword/value connection string, quoting every
// value.
type connString struct {
	b       strings.Builder
	secrets []string // values that must not appear in errors
}

func (cs *connString) add(key, value string) {
	if cs.b.Len() > 0 {
		cs.b.WriteByte(' ')
	}
	cs.b.WriteString(key)
	cs.b.WriteString("='")
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '\'' || c == '\\' {
			cs.b.WriteByte('\\')
		}
		cs.b.WriteByte(value[i])
	}
	cs.b.WriteByte('\'')
	if key == "password" || key == "sslpassword" {
		cs.secrets = append(cs.secrets, value)
	}
}

func (cs *connString) String() string { return cs.b.String() }

// validKeyword reports whether k can be written as a keyword of a
// keyword/value connection string.
func validKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; isSpace(c) || c == '=' || c == '\'' || c == '\\' || c == 0 {
			return false
		}
	}
	return true
}

// parseError turns an error of pgx.ParseConfig into one that names what
// was wrong without the connection string and without secrets.
func parseError(prefix string, err error, secrets []string) error {
	return errors.New(prefix + ": " + parseMessage(err, secrets))
}

// parseMessage is the text of an error of pgx.ParseConfig without the
// connection string pgx quotes, which it redacts only on a best-effort
// basis, and with every secret masked.
func parseMessage(err error, secrets []string) string {
	msg := err.Error()
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		c := *pce
		c.ConnString = ""
		msg = strings.TrimPrefix(c.Error(), "cannot parse ``: ")
	}
	// Longest first, so a secret that contains another is masked whole.
	s := append([]string(nil), secrets...)
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	for _, secret := range s {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
		}
	}
	return msg
}
