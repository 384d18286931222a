package pool

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Policy says how big a pool grows, how long claims wait and how
// connections are checked. The zero value of every field means its
// default; a negative duration turns the feature off where that is
// allowed.
//
// The defaults follow qorb and cueball where they hold up: 16 slots, 8
// spares, a 30 s claim timeout, a 30 s health-check interval with a 3 s
// timeout and a 20 ms → 30 s connection backoff. They differ where those
// pools are known to be weak: the total cap is never exceeded, the backoff
// is jittered on every attempt and ends at once on Close, and connections
// have a maximum lifetime and idle time.
type Policy struct {
	// MaxSlots caps the slots (open or opening connections) across all
	// backends. It is never exceeded, connections being closed and the
	// probe connection of a backend suspected of stalling (see
	// StallTimeout) included: the probe's room is made by closing an idle
	// connection, a slot backing off or the next claimed connection to
	// come back. A probe may take its backend one over MaxPerBackend
	// when every connection to it is claimed. Default 16.
	MaxSlots int
	// MaxPerBackend caps the slots of one backend. Default 16.
	MaxPerBackend int
	// Spares is how many unclaimed connections the pool keeps ready beyond
	// those claimed and waited for, spread over the backends. The pool
	// always keeps at least one slot per healthy backend. Default 8;
	// negative means none.
	Spares int
	// MaxWaiters bounds the claims waiting for a connection; a claim beyond
	// it fails at once with [ErrTooManyWaiters]. Default 4096.
	MaxWaiters int

	// ClaimTimeout bounds how long a claim waits, in addition to the
	// claim's context. Default 30 s.
	ClaimTimeout time.Duration
	// ConnectTimeout bounds one connection attempt. Default 10 s.
	ConnectTimeout time.Duration
	// HealthInterval is how often an idle connection is checked with
	// [Connector.IsValid]. Default 30 s; negative turns periodic checks off.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check and one background recycle.
	// Default 3 s.
	HealthTimeout time.Duration

	// BackoffMin and BackoffMax bound the wait between connection attempts
	// to one slot: it doubles after each failure from BackoffMin up to
	// BackoffMax, and each wait is drawn at random from its upper half.
	// Defaults 20 ms and 30 s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ProbeBackoffMax caps the wait between the connection attempts that
	// probe an offline backend, below BackoffMax, so that a backend that
	// comes back is found within seconds. Default 5 s.
	ProbeBackoffMax time.Duration
	// ConnectRate bounds the connection attempts a pool makes per second
	// to a backend that is not known to be healthy (offline, under
	// suspicion, or warming up: see SlowStart), as a fraction of that
	// backend's share of the pool's slots: 0.05 lets a backend with a
	// share of 4 slots see one attempt every 5 s. Attempts beyond
	// ConnectBurst wait for their turn, so a backend that restarts sees at
	// most this fraction of its connections per second from a fleet of
	// pools, and the burst at the start of an outage is ConnectBurst per
	// pool. A healthy backend's growth under load is never held back.
	// Default 0.05; negative turns the limit off.
	ConnectRate float64
	// ConnectBurst is how many attempts ConnectRate lets through at once.
	// Default 1.
	ConnectBurst int
	// SlowStart is how long a backend that comes back from offline, or
	// is added to a running pool, takes to reach its full share: its
	// weight, for claims and for slots alike, grows in proportion to the
	// time since, from a tenth, so its caches warm before it takes its
	// full load (as Envoy's slow start does). Default 20 s; negative turns
	// it off.
	SlowStart time.Duration
	// OfflineAfter is how many connection attempts in a row must fail,
	// with no connection to the backend open, before the backend is
	// declared offline. Default 3.
	OfflineAfter int
	// SuspectAfter is how long a connection attempt, health check or
	// background recycle may go without an answer, neither succeeding nor
	// failing, before it counts against its backend, long before
	// ConnectTimeout or HealthTimeout ends it: the backend falls under
	// suspicion (claims prefer other backends, and its idle connections
	// are checked before they are handed out again), and once OfflineAfter
	// of them are that late at once, none is less late and no connection
	// to it is idle, it is declared offline. A backend that answers late
	// but within this is never suspected for it. Default 1 s; negative
	// turns it off.
	SuspectAfter time.Duration

	// StallTimeout is how long a probe of a backend with claims out on it
	// may go unanswered before the backend is stalled: declared offline,
	// with the claimed connections aborted if the connector is an
	// [Aborter], so that their operations fail at once instead of at
	// their deadline. A probe starts once a claim has been out for
	// SuspectAfter with no answer from the backend for as long; any
	// connection attempt, check or recycle begun since the backend last
	// answered counts as one. A backend that answers its probes is never
	// cut, however long its queries run. Default 1 s; negative turns it
	// off, as does a negative SuspectAfter.
	StallTimeout time.Duration

	// PrimaryProbeInterval paces the hunt for a primary after the pool
	// lost its own (its connections failed, it left the backend set, or
	// it said it is not the primary any more): every backend's role is
	// asked at once, and then again after a wait drawn at random from
	// the upper half of this interval, until one says it is the
	// primary. Claims that need the primary wait meanwhile. It needs a
	// connector that reports roles ([RoleReporter]). Default 500 ms;
	// negative leaves roles to the periodic health checks.
	PrimaryProbeInterval time.Duration

	// MaxLifetime is how long a connection lives before it is replaced,
	// less up to a tenth at random so connections opened together do not
	// all expire together. Default 1 h; negative means forever.
	MaxLifetime time.Duration
	// MaxIdleTime is how long a connection may sit unclaimed before it is
	// replaced by a fresh one. Default 30 min; negative means forever.
	MaxIdleTime time.Duration

	// RebalanceDelay coalesces bursts of resolver updates: an update is
	// applied this long after the first one of a burst. The first update
	// a pool sees is applied at once. Default 100 ms.
	RebalanceDelay time.Duration
	// RebalanceInterval is how often the pool recomputes how many slots
	// each backend should have even when nothing happened; surplus idle
	// connections are closed only then, so the pool shrinks slowly and
	// grows at once. Default 10 s.
	RebalanceInterval time.Duration

	// Recycle says where [Connector.OnRecycle] runs when a claim gives a
	// connection back. Default [RecycleBackground].
	Recycle RecycleMode

	// LeakThreshold, when positive, turns on leak detection: each claim
	// records its goroutine's stack, and a claim held longer than this is
	// reported once, as an [EventLeak] carrying that stack (which
	// [LogEvents] logs at Warn), and counted in Stats.Leaks. It is
	// reported between LeakThreshold and 1¼ LeakThreshold after it was
	// made. Recording the stack costs each claim a few microseconds, so
	// it is off by default (zero); set it well above the longest claim a
	// program means to make (a transaction, a long query).
	LeakThreshold time.Duration

	// Observer, if set, is told of every claim, connection attempt, health
	// check, recycle, rebalance, backend state change and slot state
	// change. See [Observer].
	Observer Observer
}

// RecycleMode says where a returned connection is recycled.
type RecycleMode uint8

// The recycle modes.
const (
	// RecycleDefault leaves the choice to whoever fills in the policy: a
	// pool takes it as RecycleBackground.
	RecycleDefault RecycleMode = iota
	// RecycleBackground runs OnRecycle on a goroutine of the pool, under
	// HealthTimeout; the connection is claimable again when it is done.
	RecycleBackground
	// RecycleInline runs OnRecycle on the goroutine that calls
	// [Claim.Release]. Choose it when OnRecycle does no I/O (checking
	// in-memory session state, say): a release then costs no goroutine
	// hand-off, and the connection is ready for the next claim at once.
	// The hook then gets a context without a deadline.
	RecycleInline
)

var recycleNames = [...]string{
	RecycleDefault:    "default",
	RecycleBackground: "background",
	RecycleInline:     "inline",
}

// String returns "default", "background" or "inline".
func (m RecycleMode) String() string {
	if int(m) < len(recycleNames) {
		return recycleNames[m]
	}
	return "recycle(" + strconv.Itoa(int(m)) + ")"
}

// Defaults.
const (
	DefaultMaxSlots          = 16
	DefaultMaxPerBackend     = 16
	DefaultSpares            = 8
	DefaultMaxWaiters        = 4096
	DefaultClaimTimeout      = 30 * time.Second
	DefaultConnectTimeout    = 10 * time.Second
	DefaultHealthInterval    = 30 * time.Second
	DefaultHealthTimeout     = 3 * time.Second
	DefaultBackoffMin        = 20 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultOfflineAfter      = 3
	DefaultProbeBackoffMax   = 5 * time.Second
	DefaultConnectRate       = 0.05
	DefaultConnectBurst      = 1
	DefaultSlowStart         = 20 * time.Second
	DefaultSuspectAfter      = time.Second
	DefaultPrimaryProbe      = 500 * time.Millisecond
	DefaultStallTimeout      = time.Second
	DefaultMaxLifetime       = time.Hour
	DefaultMaxIdleTime       = 30 * time.Minute
	DefaultRebalanceDelay    = 100 * time.Millisecond
	DefaultRebalanceInterval = 10 * time.Second
)

// Limits on the counts of a [Policy]: beyond them a value is a mistake
// (a pool with more connections than a server accepts), and [New] refuses
// it rather than plan for it.
const (
	// MaxSlotsLimit bounds MaxSlots and MaxPerBackend.
	MaxSlotsLimit = 10000
	// MaxWaitersLimit bounds MaxWaiters.
	MaxWaitersLimit = 1 << 20
)

// ErrBadPolicy is wrapped by the error [New] returns for a policy it cannot
// use.
var ErrBadPolicy = errors.New("pool: bad policy")

// withDefaults returns p with zero fields set to their defaults, or an
// error naming the first field that cannot be used.
func (p Policy) withDefaults() (Policy, error) {
	intDefault := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	durDefault := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	intDefault(&p.MaxSlots, DefaultMaxSlots)
	intDefault(&p.MaxPerBackend, DefaultMaxPerBackend)
	intDefault(&p.Spares, DefaultSpares)
	intDefault(&p.MaxWaiters, DefaultMaxWaiters)
	intDefault(&p.OfflineAfter, DefaultOfflineAfter)
	intDefault(&p.ConnectBurst, DefaultConnectBurst)
	if p.ConnectRate == 0 {
		p.ConnectRate = DefaultConnectRate
	}
	durDefault(&p.ClaimTimeout, DefaultClaimTimeout)
	durDefault(&p.ConnectTimeout, DefaultConnectTimeout)
	durDefault(&p.HealthInterval, DefaultHealthInterval)
	durDefault(&p.HealthTimeout, DefaultHealthTimeout)
	durDefault(&p.SuspectAfter, DefaultSuspectAfter)
	durDefault(&p.PrimaryProbeInterval, DefaultPrimaryProbe)
	durDefault(&p.StallTimeout, DefaultStallTimeout)
	durDefault(&p.BackoffMin, DefaultBackoffMin)
	durDefault(&p.BackoffMax, DefaultBackoffMax)
	if p.ProbeBackoffMax == 0 {
		p.ProbeBackoffMax = max(min(DefaultProbeBackoffMax, p.BackoffMax), p.BackoffMin)
	}
	durDefault(&p.SlowStart, DefaultSlowStart)
	durDefault(&p.MaxLifetime, DefaultMaxLifetime)
	durDefault(&p.MaxIdleTime, DefaultMaxIdleTime)
	durDefault(&p.RebalanceDelay, DefaultRebalanceDelay)
	durDefault(&p.RebalanceInterval, DefaultRebalanceInterval)
	if p.Spares < 0 {
		p.Spares = 0
	}
	if p.Recycle == RecycleDefault {
		p.Recycle = RecycleBackground
	}
	if err := p.check(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// check returns an error naming the first field of p, its defaults
// filled in, that cannot be used.
func (p Policy) check() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("%w: %s = %v: %s", ErrBadPolicy, field, v, why)
	}
	switch {
	case p.MaxSlots < 0:
		return bad("MaxSlots", p.MaxSlots, "must be positive")
	case p.MaxSlots > MaxSlotsLimit:
		return bad("MaxSlots", p.MaxSlots, fmt.Sprintf("must be at most %d", MaxSlotsLimit))
	case p.MaxPerBackend < 0:
		return bad("MaxPerBackend", p.MaxPerBackend, "must be positive")
	case p.MaxPerBackend > MaxSlotsLimit:
		return bad("MaxPerBackend", p.MaxPerBackend, fmt.Sprintf("must be at most %d", MaxSlotsLimit))
	case p.MaxWaiters < 0:
		return bad("MaxWaiters", p.MaxWaiters, "must be positive")
	case p.MaxWaiters > MaxWaitersLimit:
		return bad("MaxWaiters", p.MaxWaiters, fmt.Sprintf("must be at most %d", MaxWaitersLimit))
	case p.Spares > MaxSlotsLimit:
		return bad("Spares", p.Spares, fmt.Sprintf("must be at most %d", MaxSlotsLimit))
	case p.OfflineAfter < 0:
		return bad("OfflineAfter", p.OfflineAfter, "must be positive")
	case p.ClaimTimeout < 0:
		return bad("ClaimTimeout", p.ClaimTimeout, "must be positive")
	case p.ConnectTimeout < 0:
		return bad("ConnectTimeout", p.ConnectTimeout, "must be positive")
	case p.HealthTimeout < 0:
		return bad("HealthTimeout", p.HealthTimeout, "must be positive")
	case p.BackoffMin < 0:
		return bad("BackoffMin", p.BackoffMin, "must be positive")
	case p.BackoffMax < p.BackoffMin:
		return bad("BackoffMax", p.BackoffMax, "must not be less than BackoffMin")
	case p.ProbeBackoffMax < p.BackoffMin:
		return bad("ProbeBackoffMax", p.ProbeBackoffMax, "must not be less than BackoffMin")
	case p.ConnectBurst < 0:
		return bad("ConnectBurst", p.ConnectBurst, "must be positive")
	case math.IsNaN(p.ConnectRate) || math.IsInf(p.ConnectRate, 0):
		return bad("ConnectRate", p.ConnectRate, "must be a finite number")
	case p.RebalanceDelay < 0:
		return bad("RebalanceDelay", p.RebalanceDelay, "must be positive")
	case p.RebalanceInterval < 0:
		return bad("RebalanceInterval", p.RebalanceInterval, "must be positive")
	case p.Recycle > RecycleInline:
		return bad("Recycle", p.Recycle, "unknown mode")
	}
	return nil
}
