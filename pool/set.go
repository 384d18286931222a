package pool

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// set is the slot set of one backend.
type set[C any] struct {
	p       *Pool[C]
	key     resolver.Key
	backend atomic.Pointer[resolver.Backend]
	// tie ranks the backend among the pool's others when nothing else
	// tells them apart: drawn at random when the set is made, so that
	// every pool breaks ties in its own order and a fleet of pools
	// spreads its connections and claims evenly.
	tie uint64

	// idle holds the idle slots.
	idle idleStack[C]

	// Read by claims without the lock.
	inUse atomic.Int32 // claimed slots
	// peak is the most slots claimed at once since the last periodic
	// rebalance, which moves it to peaks (see set.rollPeaksLocked).
	peak    atomic.Int32
	served  atomic.Uint64 // claims served, for spreading sequential claims
	suspect atomic.Bool   // a connection failed; prefer other backends
	// drained: Drain took the backend out of service; written under mu.
	drained atomic.Bool
	// closing counts its connections being closed (see doomed).
	closing atomic.Int32
	// doneAt is when a claim last came back without an error, on the
	// coarse clock: the backend answered then (see stall.go).
	doneAt  atomic.Int64
	health  atomic.Uint32 // a Health, written under mu
	learned atomic.Uint32 // the resolver.Role the server last reported
	// probeRole: a hunt for the primary wants this backend's role asked
	// (see hunt.go).
	probeRole atomic.Bool
	// roleAt is when the question the server last answered about its
	// role was asked, on the coarse clock.
	roleAt atomic.Int64
	// roleGen counts the changes of the backend's role (see
	// pickEntry.accepts).
	roleGen atomic.Uint32

	mu sync.Mutex // protects the fields below
	// slots holds every slot that is not closed.
	slots      []*slot[C]
	failStreak int // connection attempts failed in a row, across slots
	// answeredAt is when a connection attempt, check, recycle or probe
	// last succeeded, on the pool's clock (see watchLateLocked).
	answeredAt int64
	// probeSince is when the pending probe connection began, zero if
	// none, and probedAt when the last probe began (see stall.go).
	probeSince, probedAt int64
	// probeReserved: the room of the next probe connection is counted in
	// p.probing, waiting for MaxSlots to have it (see startProbeLocked).
	probeReserved bool
	// heldRetryAt and heldAttempts are the backoff of a slot closed to
	// make room for a probe (see closeBackingOffForRoom), zero if none:
	// the next slot of s takes them on, so that closing a slot does not
	// end its backoff.
	heldRetryAt  int64
	heldAttempts int
	wanted       int
	// peaks holds peak as it was at the end of each of the last
	// recentRebalances periodic rebalances, latest first.
	peaks [recentRebalances]int32
	// share is the slots the last rebalance would have given the backend
	// at its full weight, or before it went offline; it scales the
	// connect-rate limit.
	share  int
	bucket connectBucket
	// recycleBucket paces the replacement of the connections Recycle
	// marked (see recycle.go).
	recycleBucket connectBucket
	// warmAt is when the backend's slow start began, on the pool's
	// clock; zero: none. warmNext: begin one when it next comes online
	// (it was offline, or was added to a running pool).
	warmAt   int64
	warmNext bool
	// warmStepAt is when slow start next moves the picker and the slots.
	warmStepAt int64
	lastErr    string
	lastErrVal error // the error lastErr is the text of
	lastErrAt  time.Time
	failures   uint64
	waits      uint64
	waitTime   time.Duration
}

func newSet[C any](p *Pool[C], b resolver.Backend) *set[C] {
	s := &set[C]{p: p, key: b.Key(), tie: rand.Uint64()}
	s.drained.Store(p.drained[s.key]) // p.mu is held
	pol := p.policy()
	s.idle.init(min(pol.MaxPerBackend, pol.MaxSlots))
	s.backend.Store(&b)
	return s
}

// backendValue returns the backend as the resolver reported it, with the
// role its server reported when the resolver gave none.
func (s *set[C]) backendValue() resolver.Backend {
	b := *s.backend.Load()
	if b.Role == resolver.RoleUnknown {
		b.Role = resolver.Role(s.learned.Load())
	}
	return b
}

// learnRole records the role the server reported and says whether it
// changed; a change marks the picker for rebuilding, and a primary that
// says it is not one any more starts a hunt for the new one.
func (s *set[C]) learnRole(r resolver.Role) bool {
	old := resolver.Role(s.learned.Swap(uint32(r)))
	if old == r {
		return false
	}
	s.roleGen.Add(1)
	s.p.pickerDirty.Store(true)
	if old == resolver.RolePrimary && s.backend.Load().Role == resolver.RoleUnknown {
		s.p.lostPrimary()
	}
	return true
}

func (s *set[C]) getHealth() Health { return Health(s.health.Load()) }

// setHealthLocked changes the backend's health at mnow and reports
// whether it changed; a change marks the picker for rebuilding. A backend
// that goes offline begins a slow start when it comes back online.
func (s *set[C]) setHealthLocked(h Health, mnow int64) bool {
	changed := Health(s.health.Swap(uint32(h))) != h
	if !changed {
		return false
	}
	s.p.pickerDirty.Store(true)
	switch h {
	case HealthOffline:
		s.warmNext = true
	case HealthOnline:
		if s.warmNext {
			s.warmAt, s.warmNext = max(mnow, 1), false
			// Its next connection waits for a token, drawn at random
			// (see mayConnectLocked): pools that saw it come back
			// together do not open their next connections together.
			s.bucket = connectBucket{at: mnow, primed: true}
		}
	}
	return true
}

// weightOf returns the backend's effective weight: SRV weight 0 counts as 1.
func weightOf(b resolver.Backend) uint64 {
	if b.Weight == 0 {
		return 1
	}
	return uint64(b.Weight)
}

// setWantedLocked records how many slots the rebalance wants s to have,
// and how many it would at its full weight. A set that wanted none and
// now wants some is about to get its first slot: the picker must be
// rebuilt to see it (see picker.stocked).
func (s *set[C]) setWantedLocked(n, full int) {
	if s.wanted == 0 && n > 0 {
		s.p.pickerDirty.Store(true)
	}
	s.wanted = n
	if h := s.getHealth(); h == HealthOnline || h == HealthUnknown {
		s.share = full
	}
}

// stocked reports whether s has slots or wants some.
func (s *set[C]) stocked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.slots) > 0 || s.wanted > 0
}

func (s *set[C]) noteErrLocked(err error, now time.Time) {
	s.failures++
	s.lastErr = err.Error()
	s.lastErrVal = err
	s.lastErrAt = now
}

// takeIdle claims an idle slot, if there is one.
func (s *set[C]) takeIdle() (Claim[C], bool) {
	for {
		sl := s.idle.pop()
		if sl == nil {
			return Claim[C]{}, false
		}
		if sl.unwanted.Load() || s.getHealth() == HealthRemoved {
			s.dropIdle(sl)
			continue
		}
		c := s.claimSlot(sl)
		if s.idle.empty() {
			// The set just ran dry: the pool may want to grow.
			s.p.wantRebalance()
		}
		return c, true
	}
}

// dropIdle closes sl, taken off the idle stack by a claim after the slot
// became unwanted or its backend went away. It reports no event: the
// claim did not take the slot.
func (s *set[C]) dropIdle(sl *slot[C]) {
	var a after[C]
	s.mu.Lock()
	s.closeSlotLocked(sl, StateIdle, &a)
	s.mu.Unlock()
	s.p.finish(&a)
}

// rollPeaksLocked starts a new period of the peak of claims, on the
// periodic rebalance.
func (s *set[C]) rollPeaksLocked() {
	copy(s.peaks[1:], s.peaks[:])
	s.peaks[0] = s.peak.Swap(s.inUse.Load())
}

// recentPeakLocked returns the most slots claimed at once lately: in the
// current period or the last recentRebalances.
func (s *set[C]) recentPeakLocked() int {
	n := s.peak.Load()
	for _, m := range s.peaks {
		n = max(n, m)
	}
	return int(n)
}
