package qorb

import (
	"errors"
	"fmt"
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
	// CloseTimeout bounds how long Close waits for connections still in
	// use before it closes them anyway. Zero means 5 s.
	CloseTimeout time.Duration
	// MaxLag keeps a replica out of reads while it is further behind its
	// primary than this (pool_max_lag). Zero means no limit. It needs an
	// Opener that is a [Replicator]. Lag is measured from the positions
	// the health checks read, so unless Policy.HealthInterval is set they
	// run every MaxLag/2; a longer interval (pool_health_check_period)
	// makes the measure coarser: a replica may serve reads for up to that
	// long after it has fallen too far behind, and wait as long to serve
	// again once it has caught up.
	MaxLag time.Duration
	// ReplicaSRV is a second SRV name that lists only replicas
	// (replica_srv), for a service that publishes its primary and its
	// replicas under separate names; the DSN's own name then lists the
	// primary.
	ReplicaSRV string
}

// The pool parameters a DSN may carry, and the Settings field each sets.
var poolParams = map[string]func(*Settings, string) error{
	"pool_max_conns":              intParam(func(s *Settings) *int { return &s.Policy.MaxSlots }),
	"pool_max_conns_per_backend":  intParam(func(s *Settings) *int { return &s.Policy.MaxPerBackend }),
	"pool_spares":                 intParam(func(s *Settings) *int { return &s.Policy.Spares }),
	"pool_max_waiters":            intParam(func(s *Settings) *int { return &s.Policy.MaxWaiters }),
	"pool_offline_after":          intParam(func(s *Settings) *int { return &s.Policy.OfflineAfter }),
	"pool_suspect_after":          durParam(func(s *Settings) *time.Duration { return &s.Policy.SuspectAfter }),
	"pool_primary_probe_interval": durParam(func(s *Settings) *time.Duration { return &s.Policy.PrimaryProbeInterval }),
	"pool_claim_timeout":          durParam(func(s *Settings) *time.Duration { return &s.Policy.ClaimTimeout }),
	"pool_connect_timeout":        durParam(func(s *Settings) *time.Duration { return &s.Policy.ConnectTimeout }),
	"pool_health_check_period":    durParam(func(s *Settings) *time.Duration { return &s.Policy.HealthInterval }),
	"pool_health_check_timeout":   durParam(func(s *Settings) *time.Duration { return &s.Policy.HealthTimeout }),
	"pool_backoff_min":            durParam(func(s *Settings) *time.Duration { return &s.Policy.BackoffMin }),
	"pool_backoff_max":            durParam(func(s *Settings) *time.Duration { return &s.Policy.BackoffMax }),
	"pool_max_conn_lifetime":      durParam(func(s *Settings) *time.Duration { return &s.Policy.MaxLifetime }),
	"pool_max_conn_idle_time":     durParam(func(s *Settings) *time.Duration { return &s.Policy.MaxIdleTime }),
	"pool_rebalance_delay":        durParam(func(s *Settings) *time.Duration { return &s.Policy.RebalanceDelay }),
	"pool_rebalance_interval":     durParam(func(s *Settings) *time.Duration { return &s.Policy.RebalanceInterval }),
	"pool_close_timeout":          durParam(func(s *Settings) *time.Duration { return &s.CloseTimeout }),
	"pool_max_lag":                durParam(func(s *Settings) *time.Duration { return &s.MaxLag }),
	"pool_reset_session": func(s *Settings, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		s.Reset = b
		return nil
	},
}

func intParam(field func(*Settings) *int) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want an integer")
		}
		*field(s) = n
		return nil
	}
}

func durParam(field func(*Settings) *time.Duration) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			if n, nerr := strconv.Atoi(v); nerr == nil {
				d = time.Duration(n) * time.Second // plain seconds, as libpq's connect_timeout
			} else {
				return errors.New("want a duration such as 30s or 500ms")
			}
		}
		*field(s) = d
		return nil
	}
}

// ownParams are qorb's parameters other than the pool_ ones, and how each
// is taken from a DSN's values for it.
var ownParams = map[string]func(*Settings, []string) error{
	"dns_server": func(s *Settings, vs []string) error {
		for _, v := range vs {
			for _, a := range strings.Split(v, ",") {
				a = strings.TrimSpace(a)
				if a == "" {
					continue
				}
				if _, _, err := net.SplitHostPort(a); err != nil {
					a = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "53")
				}
				s.DNSServers = append(s.DNSServers, a)
			}
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
// not know and for values it cannot use; a pool_ parameter,
// replica_srv or target_session_attrs given twice is an error too, while
// dns_server may be repeated.
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
	return s, nil
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
