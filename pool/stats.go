package pool

import (
	"cmp"
	"slices"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// Stats is a snapshot of a pool.
type Stats struct {
	// Backends holds one entry per backend, sorted by priority and key.
	Backends []BackendStats
	// Waiting is the number of claims queued now.
	Waiting int
	// Paused: Pause holds new claims in the queue until Resume.
	Paused bool
	// MaxSlots is the policy's cap on slots.
	MaxSlots int
	// Timeouts counts claims that timed out or whose context ended while
	// they waited; Failures counts every failed claim.
	Timeouts, Failures uint64
	// Leaks counts the claims held past Policy.LeakThreshold, each once.
	Leaks uint64
	// ResolverError is the resolver's last error: a lookup that found no
	// usable backends (the DNS resolver names the SRV name, the name
	// server and its answer or the network error), the resolver stopping,
	// or a backend it reported that the pool could not use. It stays after
	// the resolver recovers: ResolverErrorAt says when it happened, and
	// ResolverFailing whether the last lookup failed.
	ResolverError   string
	ResolverErrorAt time.Time
	// ResolverFailing: the resolver's last lookup found no usable backends
	// (ResolverError says why).
	ResolverFailing bool
	// Stale: the pool runs on a set the resolver could not confirm: it has
	// backends, and the resolver's last lookup failed or said there are
	// none (the DNS resolver waits for a second such answer before it
	// drops them).
	Stale bool
	// ConfirmedAt is when a lookup last found the backend set (the same
	// as before or a new one); zero before the first.
	ConfirmedAt time.Time
	// BackendsChangedAt is when the resolver last added or removed a
	// backend, as the pool applied it; zero before its first backend set.
	BackendsChangedAt time.Time
}

// BackendStats is a snapshot of one backend's slot set.
type BackendStats struct {
	Backend resolver.Backend
	Health  Health
	// Drained: Drain took it out of service: it gets no new claims and
	// no new connections, and its last ones close as they come back,
	// until Undrain.
	Drained bool
	// Suspect: a connection to it failed recently, or a connection
	// attempt or check to it went unanswered past Policy.SuspectAfter;
	// claims prefer others.
	Suspect bool
	// Wanted is how many slots the last rebalance gave it.
	Wanted int
	// Warmth is the share of its weight it has in slow start (see
	// Policy.SlowStart), from 0.1 up; 1 outside slow start.
	Warmth float64
	// Slots counts its slots in each state.
	Connecting, Idle, Checking, Claimed, Recycling, BackingOff int
	// Claims counts the claims it served; Waits those of them that had to
	// wait, for WaitTime in all.
	Claims, Waits uint64
	WaitTime      time.Duration
	// Failures counts failed connection attempts, health checks, recycles
	// and discarded connections.
	Failures uint64
	// OldestClaim is how long its longest-held claim has been out.
	OldestClaim time.Duration
	// Outdated counts its connections that [Pool.Recycle] marked and
	// that are not replaced yet.
	Outdated int
	// LastError is its last failure, and LastErrorAt when it happened.
	LastError   string
	LastErrorAt time.Time
}

// Slots returns the number of slots it has in any state but closed.
func (b BackendStats) Slots() int {
	return b.Connecting + b.Idle + b.Checking + b.Claimed + b.Recycling + b.BackingOff
}

// Stats returns a snapshot of the pool.
func (p *Pool[C]) Stats() Stats {
	now := time.Now()
	p.mu.Lock()
	sets := p.setList()
	st := Stats{
		MaxSlots:          p.policy().MaxSlots,
		Timeouts:          p.stats.timeouts,
		Failures:          p.stats.failures,
		Leaks:             p.stats.leaks,
		ResolverError:     p.resolverErr,
		ResolverErrorAt:   p.resolverErrAt,
		ResolverFailing:   p.lookupErr != nil,
		Stale:             p.lookupErr != nil && p.known > 0,
		ConfirmedAt:       p.confirmedAt,
		BackendsChangedAt: p.changedAt,
	}
	p.mu.Unlock()
	st.Waiting = int(p.waiting.Load())
	st.Paused = p.paused.Load()
	sortSets(sets)
	for _, s := range sets {
		b := BackendStats{Backend: s.backendValue(), Suspect: s.suspect.Load()}
		s.mu.Lock()
		b.Health = s.getHealth()
		b.Drained = s.drained.Load()
		b.Wanted = s.wanted
		b.Warmth = s.warmth(p.mono(now))
		b.Claims = s.served.Load()
		b.Waits, b.WaitTime = s.waits, s.waitTime
		b.Failures = s.failures
		b.LastError, b.LastErrorAt = s.lastErr, s.lastErrAt
		n := countByState(s.slots)
		b.Connecting, b.Idle, b.Checking = n[StateConnecting], n[StateIdle], n[StateChecking]
		b.Claimed, b.Recycling, b.BackingOff = n[StateClaimed], n[StateRecycling], n[StateBackingOff]
		for _, sl := range s.slots {
			if sl.hasConn && p.staleSlot(sl) {
				b.Outdated++
			}
			if sl.getState() == StateClaimed {
				b.OldestClaim = max(b.OldestClaim, time.Duration(p.mono(now)-sl.claimedAt.Load()))
			}
		}
		s.mu.Unlock()
		st.Backends = append(st.Backends, b)
	}
	return st
}

func sortSets[C any](sets []*set[C]) {
	slices.SortFunc(sets, func(a, b *set[C]) int {
		return cmp.Or(cmp.Compare(a.backendValue().Priority, b.backendValue().Priority),
			cmp.Compare(a.key.Host, b.key.Host), cmp.Compare(a.key.Addr, b.key.Addr))
	})
}

func sortReports(rs []BackendReport) {
	slices.SortFunc(rs, func(a, b BackendReport) int {
		return cmp.Or(cmp.Compare(a.Backend.Host, b.Backend.Host), cmp.Compare(a.Backend.Addr, b.Backend.Addr))
	})
}
