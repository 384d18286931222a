package pool

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// slot holds at most one connection to its set's backend.
//
// A slot always has exactly one owner, and only the owner changes it: the
// set's idle stack (state idle), a claim (claimed), a goroutine of the
// pool doing its I/O (busy: connecting, checking, recycling), or the
// control loop through set.mu (backing off, or waiting for a check or
// recycle to start). Ownership passes through the idle stack's atomic head
// or set.mu, which order every write before the next owner's reads.
type slot[C any] struct {
	id  uint64
	set *set[C]
	idx uint32 // index in the set's idle stack table; fixed
	// next links the idle stack: the index+1 of the slot below.
	next atomic.Uint32

	// state is written by the owner and read by anyone; see getState.
	state atomic.Uint32
	// claim is the generation of the claim that holds the slot, or 0. A
	// release swaps it to 0, so only the first of several releases of the
	// same claim does anything.
	claim atomic.Uint64
	// claimedAt is when the current claim began, on the pool's clock.
	claimedAt atomic.Int64
	// unwanted: close the slot instead of reusing it. Set under set.mu,
	// read by whoever owns the slot.
	unwanted atomic.Bool

	// Owner's fields.
	conn C
	// gen counts claims; the current claim's handle carries it.
	gen       uint64
	idleSince int64 // on the pool's clock

	// The fields below are guarded by set.mu.
	// busy: a goroutine of the pool is connecting, checking or
	// recycling the slot and owns it until it takes set.mu again.
	busy bool
	// recheck: health-check the connection before it is handed out again.
	recheck bool
	// stale: the slot is backing off but still holds its old connection,
	// which its next connection attempt closes first.
	stale bool
	// attempts counts the connection attempts that failed in a row.
	attempts int
	// Times on the pool's clock.
	retryAt   int64 // when BackingOff ends
	checkAt   int64 // next periodic health check; zero: none
	expiresAt int64 // end of life; zero: never
}

// getState returns the slot's state. A claimed slot is one whose claim
// word is set, so claims and releases need not store the state too.
func (sl *slot[C]) getState() State {
	if sl.claim.Load() != 0 {
		return StateClaimed
	}
	return State(sl.state.Load())
}

func (sl *slot[C]) setState(st State) {
	if State(sl.state.Load()) != st {
		sl.state.Store(uint32(st))
	}
}

// set is the slot set of one backend.
type set[C any] struct {
	p       *Pool[C]
	key     resolver.Key
	backend atomic.Pointer[resolver.Backend]

	// idle holds the idle slots.
	idle idleStack[C]

	// Read by claims without the lock.
	inUse   atomic.Int32  // claimed slots
	served  atomic.Uint64 // claims served, for spreading sequential claims
	suspect atomic.Bool   // a connection failed; prefer other backends
	health  atomic.Uint32 // a Health, written under mu
	learned atomic.Uint32 // the resolver.Role the server last reported

	mu sync.Mutex // protects the fields below
	// slots holds every slot that is not closed.
	slots      []*slot[C]
	failStreak int // connection attempts failed in a row, across slots
	wanted     int
	lastErr    string
	lastErrAt  time.Time
	servedAdj  uint64 // what rebuildPicker added to served
	failures   uint64
	waits      uint64
	waitTime   time.Duration
}

func newSet[C any](p *Pool[C], b resolver.Backend) *set[C] {
	s := &set[C]{p: p, key: b.Key(), idle: newIdleStack[C](p.pol.MaxPerBackend)}
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
// changed; a change marks the picker for rebuilding.
func (s *set[C]) learnRole(r resolver.Role) bool {
	changed := resolver.Role(s.learned.Swap(uint32(r))) != r
	if changed {
		s.p.pickerDirty.Store(true)
	}
	return changed
}

func (s *set[C]) getHealth() Health { return Health(s.health.Load()) }

// setHealthLocked changes the backend's health and reports whether it
// changed; a change marks the picker for rebuilding.
func (s *set[C]) setHealthLocked(h Health) bool {
	changed := Health(s.health.Swap(uint32(h))) != h
	if changed {
		s.p.pickerDirty.Store(true)
	}
	return changed
}

// weight is the backend's effective weight: SRV weight 0 counts as 1.
func weightOf(b resolver.Backend) uint64 {
	if b.Weight == 0 {
		return 1
	}
	return uint64(b.Weight)
}

// pushIdle makes sl, which the caller owns, idle and claimable; the idle
// stack owns it from then on. It needs no lock.
func (s *set[C]) pushIdle(sl *slot[C], now int64) {
	sl.idleSince = now
	sl.setState(StateIdle)
	s.idle.push(sl)
}

// drainIdleLocked takes every slot off the idle stack; the caller owns
// them and must push back those it keeps.
func (s *set[C]) drainIdleLocked() []*slot[C] {
	var out []*slot[C]
	for sl := s.idle.pop(); sl != nil; sl = s.idle.pop() {
		out = append(out, sl)
	}
	return out
}

// dropLocked closes a slot the caller owns and returns its connection,
// for p.closeConn.
func (s *set[C]) dropLocked(sl *slot[C]) C {
	sl.unwanted.Store(true)
	c := s.detachLocked(sl)
	s.removeSlotLocked(sl)
	return c
}

// removeSlotLocked forgets a slot the caller owns, which is closed.
func (s *set[C]) removeSlotLocked(sl *slot[C]) {
	sl.setState(StateClosed)
	s.idle.forget(sl)
	for i, x := range s.slots {
		if x == sl {
			copy(s.slots[i:], s.slots[i+1:])
			s.slots[len(s.slots)-1] = nil
			s.slots = s.slots[:len(s.slots)-1]
			s.p.slotCount.Add(-1)
			return
		}
	}
}

// connectedLocked counts the slots that hold a connection.
func (s *set[C]) connectedLocked() int {
	n := 0
	for _, sl := range s.slots {
		switch sl.getState() {
		case StateIdle, StateChecking, StateClaimed, StateRecycling:
			n++
		}
	}
	return n
}

func (s *set[C]) noteErrLocked(err error, now time.Time) {
	s.failures++
	s.lastErr = err.Error()
	s.lastErrAt = now
}

// takeIdle claims an idle slot, if there is one.
func (s *set[C]) takeIdle(now int64) (Claim[C], bool) {
	for {
		sl := s.idle.pop()
		if sl == nil {
			return Claim[C]{}, false
		}
		if sl.unwanted.Load() || s.getHealth() == HealthRemoved {
			// The backend went away while the slot sat idle.
			s.mu.Lock()
			c := s.dropLocked(sl)
			s.mu.Unlock()
			s.p.closeConn(c)
			continue
		}
		c := s.claimSlot(sl, now)
		if s.idle.empty() {
			// The set just ran dry: the pool may want to grow.
			s.p.wantRebalance()
		}
		return c, true
	}
}

// claimSlot hands sl, which the caller owns, to a new claim.
func (s *set[C]) claimSlot(sl *slot[C], now int64) Claim[C] {
	sl.gen++
	if sl.claimedAt.Load() != now { // the coarse clock rarely moves
		sl.claimedAt.Store(now)
	}
	sl.setState(StateIdle) // what it returns to when the claim ends
	sl.claim.Store(sl.gen)
	s.inUse.Add(1)
	s.served.Add(1)
	return Claim[C]{slot: sl, gen: sl.gen, conn: sl.conn}
}
