package statshttp

import (
	"time"

	"github.com/qorb-go/qorb/pool"
)

// Snapshot is the JSON [Handler] serves: a pool's [pool.Stats] at one
// moment. Durations are in seconds, times are RFC 3339 in UTC (null when
// they never happened), and counters are cumulative since the pool
// started, so a client computes rates from two snapshots. Backends are
// named by host and address only: a DSN's user and password never appear.
type Snapshot struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// MaxSlots is the cap on connections (pool_max_conns).
	MaxSlots int `json:"max_slots"`
	// Waiting counts the claims queued now.
	Waiting int `json:"waiting"`
	// Paused says the pool holds new claims in the queue (Pause) until
	// it is resumed.
	Paused bool `json:"paused"`
	// Timeouts counts the claims that timed out or whose context ended
	// while queued.
	Timeouts uint64 `json:"timeouts"`
	// Failures counts the claims that failed, for any reason.
	Failures uint64 `json:"failures"`
	// Leaks counts the claims held past the leak threshold
	// (pool_leak_threshold), each once; 0 without one.
	Leaks uint64 `json:"leaks"`
	// ResolverError is the resolver's last error, "" if none: a failed
	// lookup (naming the SRV name, the name server and what it answered),
	// the resolver stopping, or a backend the pool could not use. It stays
	// after the resolver recovers; ResolverErrorAt is when it happened.
	ResolverError   string     `json:"resolver_error"`
	ResolverErrorAt *time.Time `json:"resolver_error_at"`
	// ResolverFailing says the resolver's last lookup found no usable
	// backends.
	ResolverFailing bool `json:"resolver_failing"`
	// Stale says the pool runs on a backend set the resolver could not
	// confirm (its last lookup failed, or said there are none).
	Stale bool `json:"stale"`
	// ConfirmedAt is when a lookup last found the backend set.
	ConfirmedAt *time.Time `json:"confirmed_at"`
	// BackendsChangedAt is when the resolver last added or removed a
	// backend.
	BackendsChangedAt *time.Time `json:"backends_changed_at"`
	// Backends has one entry per backend, by priority then address.
	Backends []Backend `json:"backends"`
}

// Backend is one backend in a [Snapshot].
type Backend struct {
	// Host is the name TLS verifies, and Addr the address dialled.
	Host string `json:"host"`
	Addr string `json:"addr"`
	// Priority and Weight come from SRV, or are 0 and 1 for a static
	// list.
	Priority uint16 `json:"priority"`
	Weight   uint16 `json:"weight"`
	// Role is "primary", "replica" or "unknown".
	Role string `json:"role"`
	// Health is "unknown", "online", "offline" or "removed".
	Health string `json:"health"`
	// Suspect says a connection to the backend failed recently.
	Suspect bool `json:"suspect"`
	// Drained says it was taken out of service (Drain): no new claims or
	// connections, its last connections closing as they come back.
	Drained bool `json:"drained"`
	// Wanted is the number of slots the last rebalance gave it.
	Wanted int `json:"wanted"`
	// Warmth is the share of its weight it has in slow start, from 0.1
	// up; 1 outside slow start.
	Warmth float64 `json:"warmth"`
	// Outdated counts its connections that Recycle marked and that are
	// not replaced yet.
	Outdated int `json:"outdated"`
	// Slots counts its slots by state.
	Slots Slots `json:"slots"`
	// Claims counts the claims it served, Waits those of them that
	// waited, and WaitSeconds how long they waited in all.
	Claims      uint64  `json:"claims"`
	Waits       uint64  `json:"waits"`
	WaitSeconds float64 `json:"wait_seconds"`
	// Failures counts its failed connects, health checks and recycles.
	Failures uint64 `json:"failures"`
	// OldestClaimSeconds is how long its longest-held connection has been
	// out.
	OldestClaimSeconds float64 `json:"oldest_claim_seconds"`
	// LastError is its last failure, "" if none, and LastErrorAt when that
	// happened.
	LastError   string     `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
}

// Slots counts a backend's slots by state, as [pool.BackendStats] does:
// one field per [pool.State].
type Slots struct {
	Connecting int `json:"connecting"`
	Idle       int `json:"idle"`
	Checking   int `json:"checking"`
	Claimed    int `json:"claimed"`
	Recycling  int `json:"recycling"`
	BackingOff int `json:"backing_off"`
}

// NewSnapshot returns st as a [Snapshot] taken at now: what [Handler]
// serves.
func NewSnapshot(st pool.Stats, now time.Time) Snapshot {
	out := Snapshot{
		Time:              now.UTC(),
		MaxSlots:          st.MaxSlots,
		Waiting:           st.Waiting,
		Paused:            st.Paused,
		Timeouts:          st.Timeouts,
		Failures:          st.Failures,
		Leaks:             st.Leaks,
		ResolverError:     st.ResolverError,
		ResolverErrorAt:   timeOrNull(st.ResolverErrorAt),
		ResolverFailing:   st.ResolverFailing,
		Stale:             st.Stale,
		ConfirmedAt:       timeOrNull(st.ConfirmedAt),
		BackendsChangedAt: timeOrNull(st.BackendsChangedAt),
		Backends:          make([]Backend, 0, len(st.Backends)),
	}
	for _, b := range st.Backends {
		out.Backends = append(out.Backends, Backend{
			Host:     b.Backend.Host,
			Addr:     b.Backend.Addr,
			Priority: b.Backend.Priority,
			Weight:   b.Backend.Weight,
			Role:     b.Backend.Role.String(),
			Health:   b.Health.String(),
			Suspect:  b.Suspect,
			Drained:  b.Drained,
			Wanted:   b.Wanted,
			Warmth:   b.Warmth,
			Outdated: b.Outdated,
			Slots: Slots{
				Connecting: b.Connecting,
				Idle:       b.Idle,
				Checking:   b.Checking,
				Claimed:    b.Claimed,
				Recycling:  b.Recycling,
				BackingOff: b.BackingOff,
			},
			Claims:             b.Claims,
			Waits:              b.Waits,
			WaitSeconds:        b.WaitTime.Seconds(),
			Failures:           b.Failures,
			OldestClaimSeconds: b.OldestClaim.Seconds(),
			LastError:          b.LastError,
			LastErrorAt:        timeOrNull(b.LastErrorAt),
		})
	}
	return out
}

// timeOrNull returns t in UTC without its monotonic reading, or nil for
// the zero time.
func timeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Round(0)
	return &t
}
