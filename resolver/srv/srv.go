package srv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/qorb-go/qorb/resolver"
)

// Defaults for the zero fields of [Config].
const (
	// DefaultResolvConf is where the name servers are read from when
	// Config.Servers is empty.
	DefaultResolvConf = "/etc/resolv.conf"
	// DefaultQueryTimeout bounds one question to one name server.
	DefaultQueryTimeout = 2 * time.Second
	// DefaultMinRefresh is the shortest wait between two lookups, however
	// short the TTL (a TTL of 0 included).
	DefaultMinRefresh = time.Second
	// DefaultMaxRefresh is the longest wait between two lookups, however
	// long the TTL.
	DefaultMaxRefresh = time.Minute
	// DefaultRetryMin is the shortest wait before a retry after a failed
	// lookup. The longest doubles with each failure in a row, from twice
	// this.
	DefaultRetryMin = 500 * time.Millisecond
	// DefaultRetryMax caps the wait between retries of failed lookups.
	DefaultRetryMax = 30 * time.Second
	// DefaultMaxBackends caps the number of backends a lookup returns, and
	// the number of SRV records it looks at.
	DefaultMaxBackends = 256
	// DefaultUDPSize is the EDNS0 buffer size advertised to name servers:
	// the largest answer they may send over UDP before truncating.
	DefaultUDPSize = 1232
)

const (
	// maxAddrsPerTarget caps the addresses used for one SRV target.
	maxAddrsPerTarget = 32
	// maxAddrLookups is how many targets have their addresses looked up
	// at once.
	maxAddrLookups = 8
	// jitterFraction is the largest share of a delay added at random, so
	// that many resolvers started together drift apart.
	jitterFraction = 10
)

// Config configures a [Resolver]. The zero value asks the name servers of
// /etc/resolv.conf one after the other, with the defaults of this package.
type Config struct {
	// Servers are the name servers to ask, each an IP address with an
	// optional port ("192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:53").
	// Host names are not accepted. Empty means the name servers listed in
	// ResolvConf, read once by New.
	Servers []string
	// ResolvConf is the resolv.conf file to read when Servers is empty.
	// Default [DefaultResolvConf].
	ResolvConf string
	// Parallel asks every name server at once and takes the first usable
	// answer. By default they are asked in turn: the one that answered
	// last is asked first, and the next one only when it fails.
	Parallel bool
	// QueryTimeout bounds one question to one name server (a UDP exchange,
	// or the TCP exchange after a truncated UDP answer). Default
	// [DefaultQueryTimeout].
	QueryTimeout time.Duration
	// MinRefresh and MaxRefresh clamp the wait before the next lookup,
	// which is otherwise the shortest TTL in the last answer. Defaults
	// [DefaultMinRefresh] and [DefaultMaxRefresh].
	MinRefresh time.Duration
	MaxRefresh time.Duration
	// RetryMin and RetryMax bound the backoff after failed lookups: the
	// wait after the nth failure in a row is drawn uniformly between
	// RetryMin and the lesser of RetryMin·2ⁿ and RetryMax, anew each time,
	// so that resolvers which failed together retry apart. Defaults
	// [DefaultRetryMin] and [DefaultRetryMax].
	RetryMin time.Duration
	RetryMax time.Duration
	// MaxBackends caps the backends a lookup returns and the SRV records
	// it considers. Default [DefaultMaxBackends].
	MaxBackends int
	// UDPSize is the EDNS0 buffer size advertised to the name servers,
	// from 512 to 65535. Default [DefaultUDPSize].
	UDPSize uint16
	// Role is given to every backend found, for an SRV name that lists
	// only primaries or only replicas. Default RoleUnknown.
	Role resolver.Role
	// Observer, when not nil, is told of every [Event]: each change in
	// the backend set and each DNS failure. [LogEvents] logs them.
	Observer Observer
}

// Resolver is a [resolver.Resolver] that finds backends through a DNS SRV
// record (RFC 2782) and the A and AAAA records of its targets.
//
// Each SRV record and each address of its target is one backend: a target
// with two addresses, or one target on two ports, gives two backends. The
// backend's Host is the target without the trailing dot, its Addr the IP
// address and the record's port, and its Priority and Weight those of the
// record. Addresses the server sends in the additional section of the SRV
// answer are used as they are; the other targets are asked for (A and
// AAAA) separately. A single target of "." says the service is not
// available here, and gives an empty set.
//
// Run looks the name up again when the shortest TTL of the answer runs
// out, within [Config.MinRefresh] and [Config.MaxRefresh] and with
// up to 10% added at random. When no name server gives a usable answer
// (timeout, SERVFAIL, REFUSED, a garbled answer, an unreachable server),
// the last set stays and the lookup is retried with exponential backoff.
// An answer that the name does not exist or has no backends empties the
// set only when the next lookup says so again.
//
// A Resolver is safe for concurrent use.
type Resolver struct {
	name    string   // fully qualified, lower case
	servers []string // "ip:port"
	cfg     Config
	obs     Observer // nil: nobody listens
	first   atomic.Uint32
}

// New returns a resolver for the SRV records of name, which is the full
// name the records are stored under, such as "_postgresql._tcp.db.example"
// (RFC 2782's _service._proto.domain); a trailing dot is optional. Zero
// fields of cfg take their defaults.
//
// New reads the name servers from cfg.ResolvConf when cfg.Servers is
// empty. The error wraps [ErrBadName] for a malformed name, [ErrBadServer]
// for a malformed name server address, [ErrNoServers] when there is no
// name server to ask, and [ErrBadConfig] for other bad settings.
func New(name string, cfg Config) (*Resolver, error) {
	fqdn, err := checkName(name)
	if err != nil {
		return nil, err
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	servers, err := cfg.nameServers()
	if err != nil {
		return nil, err
	}
	return &Resolver{
		name:    fqdn,
		servers: servers,
		cfg:     cfg,
		obs:     cfg.Observer,
	}, nil
}

// Name returns the SRV name the resolver looks up, fully qualified.
func (s *Resolver) Name() string { return s.name }

// Servers returns the name servers the resolver asks, as "ip:port".
func (s *Resolver) Servers() []string { return append([]string(nil), s.servers...) }

func checkName(name string) (string, error) {
	n := strings.TrimSpace(name)
	if n == "" || n == "." {
		return "", fmt.Errorf("%w %q: empty", ErrBadName, name)
	}
	if _, ok := dns.IsDomainName(n); !ok {
		return "", fmt.Errorf("%w %q: not a domain name", ErrBadName, name)
	}
	return strings.ToLower(dns.Fqdn(n)), nil
}

// fill puts the defaults into zero fields and rejects bad values.
func (c *Config) fill() error {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"QueryTimeout", &c.QueryTimeout, DefaultQueryTimeout},
		{"MinRefresh", &c.MinRefresh, DefaultMinRefresh},
		{"MaxRefresh", &c.MaxRefresh, DefaultMaxRefresh},
		{"RetryMin", &c.RetryMin, DefaultRetryMin},
		{"RetryMax", &c.RetryMax, DefaultRetryMax},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return fmt.Errorf("%w: %s is negative (%v)", ErrBadConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MinRefresh > c.MaxRefresh {
		return fmt.Errorf("%w: MinRefresh %v is above MaxRefresh %v", ErrBadConfig, c.MinRefresh, c.MaxRefresh)
	}
	if c.RetryMin > c.RetryMax {
		return fmt.Errorf("%w: RetryMin %v is above RetryMax %v", ErrBadConfig, c.RetryMin, c.RetryMax)
	}
	switch {
	case c.MaxBackends < 0:
		return fmt.Errorf("%w: MaxBackends is negative (%d)", ErrBadConfig, c.MaxBackends)
	case c.MaxBackends == 0:
		c.MaxBackends = DefaultMaxBackends
	}
	switch {
	case c.UDPSize == 0:
		c.UDPSize = DefaultUDPSize
	case c.UDPSize < dns.MinMsgSize:
		return fmt.Errorf("%w: UDPSize %d is below %d", ErrBadConfig, c.UDPSize, dns.MinMsgSize)
	}
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	return nil
}

// nameServers returns the configured name servers as "ip:port", or those
// of the resolv.conf file.
func (c *Config) nameServers() ([]string, error) {
	list, port := c.Servers, "53"
	from := "Config.Servers"
	if len(list) == 0 {
		cc, err := dns.ClientConfigFromFile(c.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("%w: reading %s: %w", ErrNoServers, c.ResolvConf, err)
		}
		list, port, from = cc.Servers, cc.Port, c.ResolvConf
	}
	out := make([]string, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		hp, err := parseServer(s, port)
		if err != nil {
			return nil, fmt.Errorf("%w %q in %s: %v", ErrBadServer, s, from, err)
		}
		if !seen[hp] {
			seen[hp] = true
			out = append(out, hp)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNoServers, from)
	}
	return out, nil
}

// parseServer turns "ip", "[ip]" or "ip:port" into "ip:port".
func parseServer(s, defaultPort string) (string, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", errors.New("port 0")
		}
		return ap.String(), nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", errors.New("want an IP address with an optional port")
	}
	p, err := strconv.ParseUint(defaultPort, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("bad port %q", defaultPort)
	}
	return net.JoinHostPort(a.String(), defaultPort), nil
}

// Record is a backend found in DNS, with the time its records may be
// cached.
type Record struct {
	resolver.Backend
	// TTL is the shorter of the TTLs of the SRV record and of the address
	// record that gave this backend.
	TTL time.Duration
}

// Resolve looks the name up once and returns the backends found, in a
// stable order (priority, then target, port and address). A lookup that
// finds no backend fails: the error wraps [ErrNoSuchName], [ErrNoRecords],
// [ErrUnavailable] or [ErrNoAddresses] when the name servers said so, and
// is a *[LookupError] when none of them gave a usable answer.
func (s *Resolver) Resolve(ctx context.Context) ([]resolver.Backend, error) {
	recs, err := s.Lookup(ctx)
	if err != nil {
		return nil, err
	}
	return backendsOf(recs), nil
}

// Lookup is [Resolver.Resolve] with the TTL of each backend: the shorter of
// its SRV record's and its address record's.
func (s *Resolver) Lookup(ctx context.Context) ([]Record, error) {
	res, err := s.lookup(ctx, nil)
	if err != nil {
		return nil, err
	}
	if len(res.records) == 0 {
		return nil, res.empty
	}
	return res.records, nil
}

// Run looks the name up, reports the backend set to rc, and looks it up
// again and reports each change until ctx is done; then it returns
// ctx.Err(). rc is called from Run's goroutine only: Update after the
// first answer (even an empty one), then only when the set differs from
// the last one reported (a backend added or removed, or its priority or
// weight changed), and Report after every lookup: nil when it found the
// set, the *[LookupError] of a failed lookup, why an answer had no
// backends (wrapping [ErrNoSuchName], [ErrNoRecords], [ErrUnavailable] or
// [ErrNoAddresses]), or the failures that left some targets without
// addresses. The slice passed to Update belongs to rc.
func (s *Resolver) Run(ctx context.Context, rc resolver.Receiver) error {
	st := runState{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		res, err := s.lookup(ctx, st.addrs)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		timer.Reset(s.apply(&st, res, err, rc))
	}
}

// runState is what Run remembers between lookups.
type runState struct {
	published bool
	last      []resolver.Backend
	addrs     map[string][]addrRR // target → addresses, from the last answer
	failures  int                 // failed lookups in a row
	empties   int                 // empty answers in a row
}

// apply takes the outcome of one lookup into st, reports the set when it
// changed and the outcome always, and returns the wait before the next
// lookup.
func (s *Resolver) apply(st *runState, res lookupResult, err error, rc resolver.Receiver) time.Duration {
	if err != nil {
		st.failures++
		next := s.backoff(st.failures)
		s.emit(Event{Kind: EventLookupFailed, Name: s.name, Err: err, Next: next})
		rc.Report(err)
		return next
	}
	next := s.refresh(res.ttl)
	if res.partial != nil {
		// Some targets' addresses are unknown: retry soon.
		st.failures++
		next = min(next, s.backoff(st.failures))
	} else {
		st.failures = 0
	}
	st.addrs = res.addrs

	if len(res.records) == 0 {
		st.empties++
		if st.published && len(st.last) > 0 && st.empties < 2 && !errors.Is(res.empty, ErrUnavailable) {
			s.emit(Event{Kind: EventEmptyPending, Name: s.name, Server: res.server, Err: res.empty, Next: next})
			rc.Report(res.empty)
			return next
		}
	} else {
		st.empties = 0
	}

	set := backendsOf(res.records)
	if st.published && equalSets(st.last, set) {
		s.emit(Event{Kind: EventUnchanged, Name: s.name, Server: res.server, Records: res.records, Next: next})
		rc.Report(cmp.Or(res.empty, res.partial))
		return next
	}
	st.published = true
	st.last = set
	if len(set) == 0 && res.empty != nil {
		// An empty set: say why first, so that a claim that finds no
		// backends already has the reason.
		rc.Report(res.empty)
		rc.Update(nil)
		s.emit(Event{Kind: EventUpdate, Name: s.name, Server: res.server, Records: res.records, Err: res.empty, Next: next})
		return next
	}
	rc.Update(append([]resolver.Backend(nil), set...))
	s.emit(Event{Kind: EventUpdate, Name: s.name, Server: res.server, Records: res.records, Err: res.empty, Next: next})
	rc.Report(res.partial)
	return next
}

// refresh returns the wait before the next lookup for an answer whose
// shortest TTL is ttl.
func (s *Resolver) refresh(ttl time.Duration) time.Duration {
	return jitter(min(max(ttl, s.cfg.MinRefresh), s.cfg.MaxRefresh))
}

// backoff returns the wait after the nth failed lookup in a row: fully
// jittered, uniform between RetryMin and the lesser of RetryMin·2ⁿ and
// RetryMax. Drawing from the whole range, rather than adding a little to
// a fixed wait, keeps the resolvers of many clients whose lookups failed
// together from retrying in waves.
func (s *Resolver) backoff(n int) time.Duration {
	return retryWait(s.cfg.RetryMin, s.cfg.RetryMax, n)
}

// retryWait draws the wait after the nth failure in a row, uniformly
// between lo and the lesser of lo·2ⁿ and hi.
func retryWait(lo, hi time.Duration, n int) time.Duration {
	ceil := lo
	for i := 0; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}

// jitter adds up to a tenth of d, at random.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + rand.N(d/jitterFraction+1)
}

// backendsOf returns the backends of recs.
func backendsOf(recs []Record) []resolver.Backend {
	out := make([]resolver.Backend, len(recs))
	for i, r := range recs {
		out[i] = r.Backend
	}
	return out
}

// equalSets reports whether a and b hold the same backends (by key) with
// the same priorities, weights and roles, in any order.
func equalSets(a, b []resolver.Backend) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[resolver.Key]resolver.Backend, len(a))
	for _, x := range a {
		m[x.Key()] = x
	}
	for _, y := range b {
		if x, ok := m[y.Key()]; !ok || x != y {
			return false
		}
	}
	return true
}
