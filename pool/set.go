package pool

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// slot holds at most one connection to its set's backend.
type slot[C any] struct {
	id  uint64
	set *set[C]

	// claim is the generation of the claim that holds the slot, or 0. A
	// release swaps it to 0, so only the first of several releases of the
	// same claim does anything.
	claim atomic.Uint64

	// The fields below are guarded by set.mu.
	state State
	conn  C
	// gen counts claims; the current claim's handle carries it.
	gen uint64
	// busy: a goroutine of the pool is connecting, checking, recycling
	// or closing the slot, and owns conn until it takes set.mu again.
	busy bool
	// unwanted: close the slot instead of reusing it.
	unwanted bool
	// recheck: health-check the connection before it is handed out again.
	recheck bool
	// stale: the slot is backing off but still holds its old connection,
	// which its next connection attempt closes first.
	stale bool
	// attempts counts the connection attempts that failed in a row.
	attempts    int
	retryAt     time.Time
	connectedAt time.Time
	checkAt     time.Time // zero: no periodic check
	// The times below are read off the pool's clock (see Pool.now).
	expiresAt int64 // zero: never
	idleSince int64
	claimedAt int64
}

// set is the slot set of one backend.
type set[C any] struct {
	p       *Pool[C]
	key     resolver.Key
	backend atomic.Pointer[resolver.Backend]

	// Read by claims without the lock.
	idleN   atomic.Int32  // len(idle)
	inUse   atomic.Int32  // claimed slots
	served  atomic.Uint64 // claims served, for spreading sequential claims
	suspect atomic.Bool   // a connection failed; prefer other backends

	mu sync.Mutex // protects the fields below
	// slots holds every slot that is not closed.
	slots []*slot[C]
	// idle holds the idle slots, the most recently returned last.
	idle       []*slot[C]
	health     Health
	failStreak int // connection attempts failed in a row, across slots
	wanted     int
	lastErr    string
	lastErrAt  time.Time
	claims     uint64
	failures   uint64
	waits      uint64
	waitTime   time.Duration
}

func (s *set[C]) backendValue() resolver.Backend { return *s.backend.Load() }

// weight is the backend's effective weight: SRV weight 0 counts as 1.
func weightOf(b resolver.Backend) uint64 {
	if b.Weight == 0 {
		return 1
	}
	return uint64(b.Weight)
}

// pushIdleLocked makes sl idle and claimable.
func (s *set[C]) pushIdleLocked(sl *slot[C], now int64) {
	sl.state = StateIdle
	sl.idleSince = now
	s.idle = append(s.idle, sl)
	s.idleN.Store(int32(len(s.idle)))
}

// removeIdleLocked takes sl, which must be idle, off the idle stack.
func (s *set[C]) removeIdleLocked(sl *slot[C]) {
	for i, x := range s.idle {
		if x == sl {
			copy(s.idle[i:], s.idle[i+1:])
			s.idle[len(s.idle)-1] = nil
			s.idle = s.idle[:len(s.idle)-1]
			break
		}
	}
	s.idleN.Store(int32(len(s.idle)))
}

// removeSlotLocked forgets a closed slot.
func (s *set[C]) removeSlotLocked(sl *slot[C]) {
	sl.state = StateClosed
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
		switch sl.state {
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

// takeIdle claims the most recently returned idle slot, if there is one.
func (s *set[C]) takeIdle(now int64) (Claim[C], bool) {
	s.mu.Lock()
	n := len(s.idle)
	if n == 0 {
		s.mu.Unlock()
		return Claim[C]{}, false
	}
	sl := s.idle[n-1]
	s.idle[n-1] = nil
	s.idle = s.idle[:n-1]
	s.idleN.Store(int32(n - 1))
	sl.state = StateClaimed
	sl.gen++
	sl.claimedAt = now
	sl.claim.Store(sl.gen)
	s.claims++
	s.inUse.Add(1)
	s.served.Add(1)
	c := Claim[C]{slot: sl, gen: sl.gen, conn: sl.conn}
	s.mu.Unlock()
	if n == 1 {
		// The set just ran dry: the pool may want to grow.
		s.p.wantRebalance()
	}
	return c, true
}

// lifetimeFrom draws a connection's expiry on the pool's clock:
// MaxLifetime less up to a tenth. Zero means never.
func (p *Pool[C]) lifetimeFrom(now time.Time) int64 {
	if p.pol.MaxLifetime < 0 {
		return 0
	}
	d := p.pol.MaxLifetime
	d -= time.Duration(rand.Int64N(int64(d)/10 + 1))
	return p.mono(now.Add(d))
}

// nextCheckFrom draws the next periodic health check: the interval plus up
// to a tenth, so checks of connections opened together spread out.
func (p *Pool[C]) nextCheckFrom(now time.Time) time.Time {
	if p.pol.HealthInterval < 0 {
		return time.Time{}
	}
	d := p.pol.HealthInterval
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	return now.Add(d)
}

// backoff returns the wait before connection attempt n+1 after n failures
// in a row: exponential from BackoffMin to BackoffMax, drawn at random from
// the upper half of that value on every attempt.
func (p *Pool[C]) backoff(failures int) time.Duration {
	d := p.pol.BackoffMin
	for i := 1; i < failures && d < p.pol.BackoffMax; i++ {
		d *= 2
	}
	if d > p.pol.BackoffMax {
		d = p.pol.BackoffMax
	}
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// picker is an immutable snapshot of the backends a claim may use, sorted
// by priority. Claims read it without a lock; the control loop replaces it
// whenever a backend comes, goes or changes health.
type picker[C any] struct {
	entries []pickEntry[C]
	// reported: the resolver has reported at least once.
	reported bool
}

type pickEntry[C any] struct {
	set     *set[C]
	backend resolver.Backend
	weight  uint64
	health  Health
}

// choose returns the set a claim with filter f should take an idle slot
// from, or nil when no set it may use has one. Only the lowest priority
// tier with a backend that is not offline counts. Within it, a backend not
// suspected of failure beats one that is; then the one with the fewest
// claims outstanding for its weight; then the one that has served the
// fewest claims for its weight, so that claims made one after another
// spread evenly in proportion to weight.
func (pk *picker[C]) choose(f Filter) *set[C] {
	es := pk.entries
	lo := 0
	for lo < len(es) && (es[lo].health == HealthOffline || (f != nil && !f(es[lo].backend))) {
		lo++
	}
	if lo == len(es) {
		return nil
	}
	prio := es[lo].backend.Priority
	hi := lo + 1
	for hi < len(es) && es[hi].backend.Priority == prio {
		hi++
	}
	n := hi - lo
	start := 0
	if n > 1 {
		start = rand.IntN(n)
	}
	var (
		best                *pickEntry[C]
		bestUse, bestServed uint64
		bestSuspect         bool
	)
	for i := 0; i < n; i++ {
		e := &es[lo+(start+i)%n]
		s := e.set
		if s.idleN.Load() <= 0 || e.health == HealthOffline {
			continue
		}
		if f != nil && !f(e.backend) {
			continue
		}
		use := uint64(s.inUse.Load())
		served := s.served.Load()
		suspect := s.suspect.Load()
		if best != nil {
			if suspect != bestSuspect {
				if suspect {
					continue
				}
			} else {
				// Compare use/weight and served/weight by cross-multiplying.
				a, b := use*best.weight, bestUse*e.weight
				if a > b || (a == b && served*best.weight >= bestServed*e.weight) {
					continue
				}
			}
		}
		best, bestUse, bestServed, bestSuspect = e, use, served, suspect
	}
	if best == nil {
		return nil
	}
	return best.set
}

// usable reports whether some backend that is not offline passes f, and
// whether some offline one does.
func (pk *picker[C]) usable(f Filter) (online, offline bool) {
	for i := range pk.entries {
		e := &pk.entries[i]
		if f != nil && !f(e.backend) {
			continue
		}
		if e.health == HealthOffline {
			offline = true
		} else {
			online = true
		}
	}
	return online, offline
}

// anyIdle reports whether any set in the snapshot has an idle slot.
func (pk *picker[C]) anyIdle() bool {
	for i := range pk.entries {
		if pk.entries[i].set.idleN.Load() > 0 {
			return true
		}
	}
	return false
}
