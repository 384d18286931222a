package qorb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/qorb-go/qorb/pool"
)

// ErrBadDSN is wrapped by every error about a DSN's form or parameters.
var ErrBadDSN = errors.New("qorb: bad DSN")

// Settings are what qorb's own DSN parameters say: the pool_ parameters,
// dns_server, replica_srv and target_session_attrs.
type Settings struct {
	// Policy is the pool policy; zero fields mean the pool's defaults,
	// except two that [NewConnector] derives when they are left zero:
	// Recycle becomes [pool.RecycleInline] unless Reset is set (recycling
	// then looks only at in-memory session state), and HealthInterval
	// becomes MaxLag/2 (at least 10 ms) when MaxLag is set. A value set
	// here is always used as it is.
	Policy pool.Policy
	// DNSServers are the name servers to ask ("host:port"), instead of
	// the system's.
	DNSServers []string
	// DefaultRole is the role claims get when their context names none.
	DefaultRole Role
	// Reset asks the dialect to reset each session fully when it comes
	// back (pool_reset_session), at the cost of a round trip.
	Reset bool
	// CloseTimeout bounds how long [Connector.Shutdown] waits for
	// connections still in use before it closes them anyway, when its
	// context has no deadline (pool_close_timeout). Zero means 5 s.
	// Close never waits.
	CloseTimeout time.Duration
	// StmtCache is how many prepared statements that no open [sql.Stmt]
	// uses each connection keeps prepared, the most recently used
	// (pool_stmt_cache): a program that prepares the same text again
	// finds it there, and those beyond are deallocated on the server.
	// Statements an open sql.Stmt uses are always kept. Zero means 16;
	// negative, none.
	StmtCache int
	// MaxLag keeps a replica out of reads while it is further behind its
	// primary than this (pool_max_lag). Zero means no limit. It needs an
	// Opener that is a [Replicator]. Lag is measured from the positions
	// the health checks read, so unless Policy.HealthInterval is set they
	// run every MaxLag/2; a longer interval (pool_health_check_period)
	// makes the measure coarser: a replica may serve reads for up to that
	// long after it has fallen too far behind, and wait as long to serve
	// again once it has caught up.
	MaxLag time.Duration
	// Logger, when not nil, logs the pool's events as [pool.LogEvents]
	// does: failed connection attempts, health checks and resolver lookups
	// (naming the SRV name, the name server and its answer) and claims held
	// past Policy.LeakThreshold (pool_leak_threshold) at Warn, backends
	// coming and going at Info, the rest at Debug. pool_log=default sets it
	// to log to [slog.Default], whichever logger that is when each record
	// is logged. Without it, leaks alone are logged, to slog.Default.
	Logger *slog.Logger
	// ReplicaSRV is a second SRV name that lists only replicas
	// (replica_srv), for a service that publishes its primary and its
	// replicas under separate names; the DSN's own name then lists the
	// primary.
	ReplicaSRV string
}

// poolParams are the pool parameters a DSN may carry: the Settings field
// each sets and the values it accepts. [TakeSettings] refuses a value out
// of range, naming the parameter, so that a DSN fails in ParseDSN rather
// than later in [NewConnector], which names Go fields. A zero meaning
// "the default" is for the Go API; a DSN says a default by leaving the
// parameter out, so zero is refused where it would hide a mistake.
var poolParams = map[string]setParam{
	"pool_max_conns":              count(func(s *Settings) *int { return &s.Policy.MaxSlots }, 1, pool.MaxSlotsLimit),
	"pool_max_conns_per_backend":  count(func(s *Settings) *int { return &s.Policy.MaxPerBackend }, 1, pool.MaxSlotsLimit),
	"pool_spares":                 count(func(s *Settings) *int { return &s.Policy.Spares }, -1, pool.MaxSlotsLimit),
	"pool_max_waiters":            count(func(s *Settings) *int { return &s.Policy.MaxWaiters }, 1, pool.MaxWaitersLimit),
	"pool_offline_after":          count(func(s *Settings) *int { return &s.Policy.OfflineAfter }, 1, maxOfflineAfter),
	"pool_suspect_after":          duration(func(s *Settings) *time.Duration { return &s.Policy.SuspectAfter }, negativeOff),
	"pool_primary_probe_interval": duration(func(s *Settings) *time.Duration { return &s.Policy.PrimaryProbeInterval }, negativeOff),
	"pool_stall_timeout":          duration(func(s *Settings) *time.Duration { return &s.Policy.StallTimeout }, negativeOff),
	"pool_claim_timeout":          duration(func(s *Settings) *time.Duration { return &s.Policy.ClaimTimeout }, positive),
	"pool_connect_timeout":        duration(func(s *Settings) *time.Duration { return &s.Policy.ConnectTimeout }, positive),
	"pool_health_check_period":    duration(func(s *Settings) *time.Duration { return &s.Policy.HealthInterval }, negativeOff),
	"pool_health_check_timeout":   duration(func(s *Settings) *time.Duration { return &s.Policy.HealthTimeout }, positive),
	"pool_backoff_min":            duration(func(s *Settings) *time.Duration { return &s.Policy.BackoffMin }, positive),
	"pool_backoff_max":            duration(func(s *Settings) *time.Duration { return &s.Policy.BackoffMax }, positive),
	"pool_probe_backoff_max":      duration(func(s *Settings) *time.Duration { return &s.Policy.ProbeBackoffMax }, positive),
	"pool_slow_start":             duration(func(s *Settings) *time.Duration { return &s.Policy.SlowStart }, negativeOff),
	"pool_connect_rate":           rate(func(s *Settings) *float64 { return &s.Policy.ConnectRate }),
	"pool_connect_burst":          count(func(s *Settings) *int { return &s.Policy.ConnectBurst }, 1, pool.MaxSlotsLimit),
	"pool_max_conn_lifetime":      duration(func(s *Settings) *time.Duration { return &s.Policy.MaxLifetime }, negativeOff),
	"pool_max_conn_idle_time":     duration(func(s *Settings) *time.Duration { return &s.Policy.MaxIdleTime }, negativeOff),
	"pool_rebalance_delay":        duration(func(s *Settings) *time.Duration { return &s.Policy.RebalanceDelay }, positive),
	"pool_rebalance_interval":     duration(func(s *Settings) *time.Duration { return &s.Policy.RebalanceInterval }, positive),
	"pool_close_timeout":          duration(func(s *Settings) *time.Duration { return &s.CloseTimeout }, positive),
	"pool_max_lag":                duration(func(s *Settings) *time.Duration { return &s.MaxLag }, zeroOff),
	"pool_reset_session":          boolean(func(s *Settings) *bool { return &s.Reset }),
	"pool_stmt_cache":             count(func(s *Settings) *int { return &s.StmtCache }, -1, maxStmtCache),
	"pool_leak_threshold":         duration(func(s *Settings) *time.Duration { return &s.Policy.LeakThreshold }, positive),
	"pool_log": func(s *Settings, v string) error {
		switch v {
		case "default":
			s.Logger = slog.New(defaultHandler{})
		case "off":
			s.Logger = nil
		default:
			return errors.New("want default or off")
		}
		return nil
	},
}

// maxStmtCache bounds pool_stmt_cache.
const maxStmtCache = 10000

// maxOfflineAfter bounds pool_offline_after: past it, a dead backend
// would never be declared offline in practice.
const maxOfflineAfter = 1000

// A setParam reads one parameter's value into s. Its error says what is
// wrong with the value; the caller names the parameter.
type setParam func(s *Settings, v string) error

// count is a setParam for an integer from lo to hi.
func count(field func(*Settings) *int, lo, hi int) setParam {
	return func(s *Settings, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return fmt.Errorf("out of range: want %d to %d", lo, hi)
			}
			return errors.New("want an integer")
		}
		if n < lo || n > hi {
			if lo == -1 && n < 0 {
				return errors.New("want -1 for none")
			}
			return fmt.Errorf("out of range: want %d to %d", lo, hi)
		}
		if n == 0 && lo < 0 {
			return errors.New("0 would mean the default: leave the parameter out for it, or give -1 for none")
		}
		*field(s) = n
		return nil
	}
}

// durRule says which durations a parameter accepts.
// maxRate bounds pool_connect_rate: beyond it the limit would never bind.
const maxRate = 1000

// rate is a setParam for a fraction per second, such as
// pool_connect_rate: positive, or negative to turn the limit off.
func rate(field func(*Settings) *float64) setParam {
	return func(s *Settings, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			return errors.New("want a number such as 0.05")
		case f == 0:
			return errors.New("0 would mean the default: leave the parameter out for it, or give -1 to turn it off")
		case f > maxRate:
			return fmt.Errorf("out of range: want at most %d", maxRate)
		}
		*field(s) = f
		return nil
	}
}

type durRule uint8

const (
	positive    durRule = iota // more than zero
	zeroOff                    // zero or more; zero turns the feature off
	negativeOff                // any but zero; negative turns the feature off
)

// duration is a setParam for a duration in Go's syntax (500ms, 30s) or
// in plain seconds, as libpq's connect_timeout, that rule accepts.
func duration(field func(*Settings) *time.Duration, rule durRule) setParam {
	return func(s *Settings, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		switch {
		case rule == positive && d <= 0:
			return errors.New("must be positive")
		case rule == zeroOff && d < 0:
			return errors.New("must not be negative (0 means no limit)")
		case rule == negativeOff && d == 0:
			return errors.New("0 would mean the default: leave the parameter out for it, or give -1s to turn it off")
		}
		*field(s) = d
		return nil
	}
}

// parseDuration reads a duration in Go's syntax or in plain seconds.
func parseDuration(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, errors.New("duration out of range")
		}
		return 0, errors.New("want a duration such as 30s or 500ms")
	}
	const maxSeconds = int64(math.MaxInt64 / time.Second)
	if n > maxSeconds || n < -maxSeconds {
		return 0, errors.New("duration out of range")
	}
	return time.Duration(n) * time.Second, nil
}

// boolean is a setParam for true or false.
func boolean(field func(*Settings) *bool) setParam {
	return func(s *Settings, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*field(s) = b
		return nil
	}
}

// ownParams are qorb's parameters other than the pool_ ones, and how each
// is taken from a DSN's values for it.
var ownParams = map[string]func(*Settings, []string) error{
	"dns_server": func(s *Settings, vs []string) error {
		if len(vs) != 1 {
			return fmt.Errorf("%w: dns_server given %d times; list several name servers in one, separated by commas", ErrBadDSN, len(vs))
		}
		for _, a := range strings.Split(vs[0], ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				return fmt.Errorf("%w: dns_server=%q: empty name server address; leave dns_server out to use the system's", ErrBadDSN, vs[0])
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				a = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "53")
			}
			s.DNSServers = append(s.DNSServers, a)
		}
		return nil
	},
	"replica_srv": func(s *Settings, vs []string) error {
		if len(vs) != 1 || vs[0] == "" {
			return fmt.Errorf("%w: replica_srv wants one SRV name", ErrBadDSN)
		}
		s.ReplicaSRV = vs[0]
		return nil
	},
	"target_session_attrs": func(s *Settings, vs []string) error {
		if len(vs) != 1 {
			return fmt.Errorf("%w: target_session_attrs given %d times", ErrBadDSN, len(vs))
		}
		r, err := ParseTargetSessionAttrs(vs[0])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadDSN, err)
		}
		s.DefaultRole = r
		return nil
	},
}

// OwnParam reports whether a DSN parameter called name is qorb's own:
// one that [TakeSettings] takes out and that must never reach a database
// driver. Those are every name starting with "pool_" (known or not),
// dns_server, replica_srv and target_session_attrs. Dialects use it to
// refuse qorb's parameters in a driver configuration.
func OwnParam(name string) bool {
	_, ok := ownParams[name]
	return ok || strings.HasPrefix(name, "pool_")
}

// TakeSettings removes qorb's parameters (those [OwnParam] names) from
// params and returns what they say. Every other parameter is left for the
// database driver. It fails, naming them, for pool_ parameters it does
// not know and for values out of range (each parameter's range is in the
// README), and for any of its parameters given twice; every error wraps
// [ErrBadDSN] and names the parameter.
func TakeSettings(params url.Values) (Settings, error) {
	var s Settings
	var unknown []string
	for _, k := range sortedKeys(params) {
		if !OwnParam(k) {
			continue
		}
		vs := params[k]
		if take, ok := ownParams[k]; ok {
			if err := take(&s, vs); err != nil {
				return Settings{}, err
			}
			delete(params, k)
			continue
		}
		set, ok := poolParams[k]
		if !ok {
			unknown = append(unknown, k)
			continue
		}
		if len(vs) != 1 {
			return Settings{}, fmt.Errorf("%w: %s given %d times", ErrBadDSN, k, len(vs))
		}
		if err := set(&s, vs[0]); err != nil {
			return Settings{}, fmt.Errorf("%w: %s=%q: %v", ErrBadDSN, k, vs[0], err)
		}
		delete(params, k)
	}
	if len(unknown) > 0 {
		known := make([]string, 0, len(poolParams))
		for k := range poolParams {
			known = append(known, k)
		}
		sort.Strings(known)
		return Settings{}, fmt.Errorf("%w: unknown pool parameter %s (known: %s)",
			ErrBadDSN, strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	if err := s.checkBackoff(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// checkBackoff fails when pool_backoff_min is above pool_backoff_max,
// either given or by default.
func (s Settings) checkBackoff() error {
	lo, hi := s.Policy.BackoffMin, s.Policy.BackoffMax
	if lo == 0 && hi == 0 {
		return nil
	}
	loName, hiName := "pool_backoff_min", "pool_backoff_max"
	if lo == 0 {
		lo, loName = pool.DefaultBackoffMin, "the default pool_backoff_min"
	}
	if hi == 0 {
		hi, hiName = pool.DefaultBackoffMax, "the default pool_backoff_max"
	}
	if lo > hi {
		return fmt.Errorf("%w: %s (%v) is more than %s (%v)", ErrBadDSN, loName, lo, hiName, hi)
	}
	return nil
}

// ForHosts reports whether s suits a DSN that lists its hosts instead of
// naming SRV records: it fails, wrapping [ErrBadDSN], when s says what
// only a lookup in DNS can use, a name server (dns_server) or a second
// SRV name (replica_srv).
func (s Settings) ForHosts() error {
	switch {
	case len(s.DNSServers) > 0:
		return fmt.Errorf("%w: dns_server is for +srv DSNs only", ErrBadDSN)
	case s.ReplicaSRV != "":
		return fmt.Errorf("%w: replica_srv is for +srv DSNs only", ErrBadDSN)
	}
	return nil
}

func sortedKeys(v url.Values) []string {
	ks := make([]string, 0, len(v))
	for k := range v {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// defaultHandler hands each record to the handler of [slog.Default] as
// it is at that moment, so that pool_log=default follows a program that
// sets its default logger after opening the database.
type defaultHandler struct {
	attrs []slog.Attr
	group string // "" or the one group opened by WithGroup
}

func (h defaultHandler) handler() slog.Handler {
	d := slog.Default().Handler()
	if len(h.attrs) > 0 {
		d = d.WithAttrs(h.attrs)
	}
	if h.group != "" {
		d = d.WithGroup(h.group)
	}
	return d
}

func (h defaultHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return slog.Default().Handler().Enabled(ctx, l)
}

func (h defaultHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

func (h defaultHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if h.group != "" {
		return h.handler().WithAttrs(attrs) // nested: fix it to today's default
	}
	return defaultHandler{attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h defaultHandler) WithGroup(name string) slog.Handler {
	if h.group != "" || name == "" {
		return h.handler().WithGroup(name)
	}
	return defaultHandler{attrs: h.attrs, group: name}
}
