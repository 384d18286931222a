package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// Claim is a connection handed out by a pool. It is a small value: copying
// it does not copy the claim. The first call of [Claim.Release] or
// [Claim.Discard] on any copy ends the claim; later calls do nothing.
type Claim[C any] struct {
	slot *slot[C]
	gen  uint64
	conn C
}

// Conn returns the claimed connection.
func (c Claim[C]) Conn() C { return c.conn }

// Backend returns the backend the connection is to.
func (c Claim[C]) Backend() resolver.Backend {
	if c.slot == nil {
		return resolver.Backend{}
	}
	return c.slot.set.backendValue()
}

// Release gives the connection back to the pool, which recycles it.
func (c Claim[C]) Release() { c.end(nil) }

// Discard gives the connection back as broken: the pool closes it, opens
// another in its place, suspects the backend, and health-checks the
// backend's idle connections before handing them out again. err, which
// may be nil, is recorded as the backend's last error.
func (c Claim[C]) Discard(err error) {
	if err == nil {
		err = errDiscarded
	}
	c.end(err)
}

var errDiscarded = errors.New("connection discarded by its claimer")

// end ends the claim, as broken when err is not nil.
func (c Claim[C]) end(err error) {
	sl := c.slot
	if sl == nil || !sl.claim.CompareAndSwap(c.gen, 0) {
		return // not claimed, or already ended
	}
	// From here on this goroutine owns the slot.
	s := sl.set
	p := s.p
	broken := err != nil
	inline := p.policy().Recycle == RecycleInline // read once: SetPolicy may change it
	if !broken && inline {
		if rerr := p.conn.OnRecycle(context.Background(), c.conn); rerr != nil {
			err = fmt.Errorf("recycle: %w", rerr)
		}
	}
	observing := p.observing()
	now := p.now()
	if observing {
		now = p.tickClock(time.Now())
	}
	held := time.Duration(now - sl.claimedAt.Load())
	s.inUse.Add(-1)
	p.changed()
	if err == nil && s.doneAt.Load() < now {
		s.doneAt.Store(now) // the backend answered (see stall.go)
	}
	if err == nil && inline && !p.closing.Load() && !sl.unwanted.Load() && !p.roomWanted.Load() &&
		!s.suspect.Load() && !s.probeRole.Load() && s.getHealth() != HealthRemoved && (sl.expiresAt == 0 || now < sl.expiresAt) && !p.staleSlot(sl) {
		// The fast path: no lock but the queue's, and only when claims
		// are queued.
		to := p.handOff(sl, now, false)
		if observing {
			p.emit(Event{Kind: EventRelease, Backend: s.key, Slot: sl.id, Duration: held})
			if to != StateClaimed { // else handed straight to a queued claim
				p.emit(Event{Kind: EventSlotState, Backend: s.key, Slot: sl.id, From: StateClaimed, To: to})
			}
		}
		return
	}

	p.release(sl, err, broken, held, now, observing)
}

// release is the rest of end, for when the slot cannot simply be handed
// on: the transition is releasedLocked's. A closing pool closes the
// connection here and reports nothing more.
func (p *Pool[C]) release(sl *slot[C], err error, broken bool, held time.Duration, now int64, observing bool) {
	s := sl.set
	a := after[C]{observing: observing}
	a.event(Event{Kind: EventRelease, Backend: s.key, Slot: sl.id, Duration: held, Err: err})
	s.mu.Lock()
	s.releasedLocked(sl, err, broken, now, &a)
	s.mu.Unlock()
	if p.closing.Load() {
		p.finish(&after[C]{inline: true, closes: a.closes})
		return
	}
	p.finish(&a)
	p.poke()
}

// handOff gives a released slot, which the caller owns, to the oldest
// queued claim that may use it, or makes it idle; it returns the slot's
// new state. A slot a claim gave back goes on top of the idle stack; one
// back from background work (inOrder) goes below those claimed since it
// was (see set.pushIdleInOrder).
func (p *Pool[C]) handOff(sl *slot[C], now int64, inOrder bool) State {
	s := sl.set
	if p.waiting.Load() > 0 && !sl.unwanted.Load() {
		p.wmu.Lock()
		if w := p.firstWaiterLocked(s.backendValue()); w != nil {
			p.waiters.remove(w)
			p.waiting.Add(-1)
			p.wmu.Unlock()
			w.ch <- waitResult[C]{c: s.claimSlot(sl)}
			return StateClaimed
		}
		p.wmu.Unlock()
	}
	if inOrder {
		s.pushIdleInOrder(sl, now)
	} else {
		s.pushIdle(sl, now)
	}
	if p.closing.Load() {
		// Close may have drained the stack before the push.
		s.closeIdleLate()
		return StateIdle
	}
	if sl.unwanted.Load() {
		// Drain or a lowered cap marked it on its way to the stack, and
		// may have drained the stack before the push.
		s.closeUnwantedIdle()
		return StateIdle
	}
	if p.waiting.Load() > 0 {
		// A claim queued while the slot was on its way to the stack.
		p.dispatch()
	}
	return StateIdle
}

// firstWaiterLocked returns the oldest queued claim that may use backend
// b, or nil (always, while the pool is paused); p.wmu must be held.
func (p *Pool[C]) firstWaiterLocked(b resolver.Backend) *waiter[C] {
	if p.paused.Load() {
		return nil
	}
	for w := p.waiters.head; w != nil; w = w.next {
		if w.filter == nil || w.filter(b) {
			return w
		}
	}
	return nil
}

// Claim returns a connection to one of the pool's backends. It waits,
// first-come first-served, until one is free, the policy's claim timeout
// passes or ctx ends. Errors wrap [ErrClosed], [ErrNoBackends],
// [ErrNoBackendsOnline], [ErrTooManyWaiters] or [ErrClaimTimeout]; all but
// the first are a [*ClaimError] that says what each backend last did.
func (p *Pool[C]) Claim(ctx context.Context) (Claim[C], error) {
	return p.ClaimFiltered(ctx, nil)
}

// ClaimFiltered is [Pool.Claim] limited to the backends f accepts; a nil f
// accepts all.
func (p *Pool[C]) ClaimFiltered(ctx context.Context, f Filter) (Claim[C], error) {
	c, err := p.claim(ctx, f)
	if err == nil && p.acq != nil {
		c, err = p.acquire(ctx, f, c)
	}
	if err == nil && p.policy().LeakThreshold > 0 {
		p.traceClaim(c, 0)
	}
	return c, err
}

// maxAcquireAttempts bounds the connections one claim takes when the
// [Acquirer] hook fails on them.
const maxAcquireAttempts = 3

// acquire runs the Acquirer hook on c, just claimed for filter f, and
// claims another connection in place of each one the hook fails on, which
// it discards, up to maxAcquireAttempts connections in all.
func (p *Pool[C]) acquire(ctx context.Context, f Filter, c Claim[C]) (Claim[C], error) {
	for attempt := 1; ; attempt++ {
		err := p.acquireHook(ctx, c)
		if err == nil {
			return c, nil
		}
		if attempt == maxAcquireAttempts || ctx.Err() != nil {
			return Claim[C]{}, fmt.Errorf("pool: acquire hook failed %d times, last on %s: %w", attempt, c.slot.set.key, err)
		}
		if c, err = p.claim(ctx, f); err != nil {
			return c, err
		}
	}
}

// acquireHook runs the Acquirer hook on a connection just claimed, and
// discards the connection when the hook fails.
func (p *Pool[C]) acquireHook(ctx context.Context, c Claim[C]) error {
	err := p.acq.OnAcquire(ctx, c.conn)
	if err != nil {
		c.Discard(fmt.Errorf("acquire hook: %w", err))
	}
	return err
}

func (p *Pool[C]) claim(ctx context.Context, f Filter) (Claim[C], error) {
	if p.closing.Load() {
		return Claim[C]{}, ErrClosed
	}
	if p.waiting.Load() == 0 {
		observing := p.observing()
		if observing {
			p.tickClock(time.Now()) // events carry times: keep the clock close
		}
		if c, ok := p.take(p.picker.Load(), f); ok {
			if p.paused.Load() {
				// Paused since the check of the queue: Pause may have
				// counted the claims out without this one.
				p.putBack(c)
				return p.wait(ctx, f)
			}
			if observing {
				p.claimedNow(c)
			}
			return c, nil
		}
	}
	return p.wait(ctx, f)
}

// claimedNow tells the observer of c, claimed without waiting.
func (p *Pool[C]) claimedNow(c Claim[C]) {
	s := c.slot.set
	p.emit(Event{Kind: EventSlotState, Backend: s.key, Slot: c.slot.id, From: StateIdle, To: StateClaimed})
	p.emit(Event{Kind: EventClaim, Backend: s.key, Slot: c.slot.id})
}

// take claims an idle slot for filter f, if any set has one.
func (p *Pool[C]) take(pk *picker[C], f Filter) (Claim[C], bool) {
	for range takeTries {
		s := pk.choose(f)
		if s == nil {
			return Claim[C]{}, false
		}
		if c, ok := s.takeIdle(); ok {
			return c, true
		}
	}
	return Claim[C]{}, false
}

// takeTries bounds how often take asks the picker again when the set it
// chose ran dry before the claim could pop a slot (other claims got there
// first). Past it the claim queues, where dispatch finds it a slot.
const takeTries = 4

type waitResult[C any] struct {
	c   Claim[C]
	err error
}

// waiter is a claim in the queue.
type waiter[C any] struct {
	filter     Filter
	ch         chan waitResult[C] // capacity 1
	start      int64              // when it queued, on the pool's clock
	deadline   int64              // start + ClaimTimeout
	next, prev *waiter[C]
	queued     bool
}

// waitQueue is a FIFO of waiters, linked through the waiters themselves.
type waitQueue[C any] struct {
	head, tail *waiter[C]
	n          int
}

func (q *waitQueue[C]) push(w *waiter[C]) {
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
	w.queued = true
}

func (q *waitQueue[C]) remove(w *waiter[C]) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.next, w.prev = nil, nil
	q.n--
	w.queued = false
}

// wait queues the claim until a slot is handed to it. The control loop
// fails it when the claim timeout passes (see expireWaiters); the claim
// itself watches only its context, so waiting costs no timer.
func (p *Pool[C]) wait(ctx context.Context, f Filter) (Claim[C], error) {
	start := p.clockNow()
	pk := p.picker.Load()
	if sentinel := pk.hopeless(f); sentinel != nil && !p.paused.Load() {
		return Claim[C]{}, p.claimError(sentinel, nil, 0, f)
	}
	if err := ctx.Err(); err != nil {
		return Claim[C]{}, p.claimError(ErrClaimTimeout, err, 0, f)
	}

	w, err := p.enqueue(f, start)
	if err != nil {
		return Claim[C]{}, err
	}

	var (
		r     waitResult[C]
		cause error
	)
	if done := ctx.Done(); done == nil {
		r = <-w.ch
	} else {
		select {
		case r = <-w.ch:
		case <-done:
			cause = ctx.Err()
			p.wmu.Lock()
			if w.queued {
				p.waiters.remove(w)
				p.waiting.Add(-1)
				p.recycleWaiterLocked(w)
				p.wmu.Unlock()
				p.countTimeout()
				return Claim[C]{}, p.claimError(ErrClaimTimeout, cause, time.Duration(p.clockNow()-start), f)
			}
			p.wmu.Unlock()
			r = <-w.ch // handed a result while giving up: take it
		}
	}
	p.wmu.Lock()
	p.recycleWaiterLocked(w)
	p.wmu.Unlock()
	if r.err != nil {
		return Claim[C]{}, r.err
	}
	waited := time.Duration(p.clockNow() - start)
	if cause != nil {
		r.c.Release()
		p.countTimeout()
		return Claim[C]{}, p.claimError(ErrClaimTimeout, cause, waited, f)
	}
	s := r.c.slot.set
	s.mu.Lock()
	s.waits++
	s.waitTime += waited
	s.mu.Unlock()
	if p.observing() {
		p.emit(Event{Kind: EventSlotState, Backend: s.key, Slot: r.c.slot.id, From: StateIdle, To: StateClaimed})
		p.emit(Event{Kind: EventClaim, Backend: s.key, Slot: r.c.slot.id, Duration: waited})
	}
	return r.c, nil
}

// enqueue queues a claim with filter f that started waiting at start (on
// the pool's clock), unless the pool is closing or the queue is full.
func (p *Pool[C]) enqueue(f Filter, start int64) (*waiter[C], error) {
	p.wmu.Lock()
	if p.closing.Load() {
		p.wmu.Unlock()
		return nil, ErrClosed
	}
	if p.waiters.n >= p.policy().MaxWaiters {
		p.wmu.Unlock()
		return nil, p.claimError(ErrTooManyWaiters, nil, 0, f)
	}
	var w *waiter[C]
	if n := len(p.free); n > 0 {
		w = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		w = &waiter[C]{ch: make(chan waitResult[C], 1)}
	}
	w.filter = f
	w.start, w.deadline = start, start+int64(p.policy().ClaimTimeout)
	first := p.waiters.n == 0
	p.waiters.push(w)
	p.waiting.Add(1)
	// A slot may have come free between the fast path and the queue.
	p.dispatchLocked()
	p.wmu.Unlock()
	p.wantRebalance()
	if first {
		p.poke() // the control loop now has a claim to time out
	}
	return w, nil
}

// expireWaiters fails the queued claims whose claim timeout has passed
// and returns when the next one's does (zero: none queued). All claims
// get the same timeout (SetPolicy gives the queued ones a new one too), so
// the queue is in deadline order.
func (p *Pool[C]) expireWaiters(now int64) (next int64) {
	var expired []*waiter[C]
	p.wmu.Lock()
	for w := p.waiters.head; w != nil && w.deadline <= now; w = p.waiters.head {
		p.waiters.remove(w)
		p.waiting.Add(-1)
		expired = append(expired, w)
	}
	if p.waiters.head != nil {
		next = p.waiters.head.deadline
	}
	p.wmu.Unlock()
	for _, w := range expired {
		p.countTimeout()
		waited := time.Duration(now - w.start)
		w.ch <- waitResult[C]{err: p.claimError(ErrClaimTimeout, nil, waited, w.filter)}
	}
	return next
}

// maxFreeWaiters bounds the spare waiters kept for reuse, so that a burst
// of queued claims does not pin its waiters for the life of the pool.
const maxFreeWaiters = 64

// recycleWaiterLocked keeps w for the next claim that queues; p.wmu must
// be held.
func (p *Pool[C]) recycleWaiterLocked(w *waiter[C]) {
	w.filter = nil
	if len(p.free) < maxFreeWaiters {
		p.free = append(p.free, w)
	}
}

func (p *Pool[C]) countTimeout() {
	p.mu.Lock()
	p.stats.timeouts++
	p.mu.Unlock()
}

// dispatch hands idle slots to queued claims, oldest first. A claim whose
// filter no idle slot passes does not hold up the ones behind it.
func (p *Pool[C]) dispatch() {
	p.wmu.Lock()
	p.dispatchLocked()
	p.wmu.Unlock()
}

// dispatchLocked is dispatch with p.wmu held. It hands out nothing while
// the pool is paused.
func (p *Pool[C]) dispatchLocked() {
	if p.paused.Load() {
		return
	}
	pk := p.picker.Load()
	for w := p.waiters.head; w != nil; {
		next := w.next
		if c, ok := p.take(pk, w.filter); ok {
			p.waiters.remove(w)
			p.waiting.Add(-1)
			w.ch <- waitResult[C]{c: c}
		} else if !pk.anyIdle() {
			break
		}
		w = next
	}
}

// failHopeless fails the queued claims that no backend can serve any more,
// unless the pool is paused: a switchover under way may take every
// backend down for a while, and Resume looks again.
func (p *Pool[C]) failHopeless() {
	pk := p.picker.Load()
	if !pk.reported || p.waiting.Load() == 0 || p.paused.Load() {
		return
	}
	type failed struct {
		w        *waiter[C]
		sentinel error
	}
	var fs []failed
	p.wmu.Lock()
	for w := p.waiters.head; w != nil; {
		next := w.next
		if sentinel := pk.hopeless(w.filter); sentinel != nil {
			p.waiters.remove(w)
			p.waiting.Add(-1)
			fs = append(fs, failed{w, sentinel})
		}
		w = next
	}
	p.wmu.Unlock()
	// Build the errors outside wmu: claimError takes set locks.
	for _, f := range fs {
		f.w.ch <- waitResult[C]{err: p.claimError(f.sentinel, nil, 0, f.w.filter)}
	}
}

// claimError builds the error for a failed claim and counts the failure.
func (p *Pool[C]) claimError(sentinel, cause error, waited time.Duration, f Filter) error {
	now := time.Now()
	e := &ClaimError{Err: sentinel, Cause: cause, Waited: waited}
	p.mu.Lock()
	sets := p.setList()
	p.stats.failures++
	e.Resolver = p.lookupErr
	p.mu.Unlock()
	for _, s := range sets {
		b := s.backendValue()
		if f != nil && !f(b) {
			continue
		}
		r := BackendReport{Backend: s.key}
		s.mu.Lock()
		r.Health = s.getHealth()
		n := countByState(s.slots)
		r.Idle, r.Claimed, r.Connecting, r.BackingOff = n[StateIdle], n[StateClaimed], n[StateConnecting], n[StateBackingOff]
		r.LastError, r.Err = s.lastErr, s.lastErrVal
		if !s.lastErrAt.IsZero() {
			r.LastErrorAge = now.Sub(s.lastErrAt)
		}
		s.mu.Unlock()
		e.Backends = append(e.Backends, r)
	}
	sortReports(e.Backends)
	if p.observing() {
		p.emit(Event{Kind: EventClaimFailed, Err: e, Duration: waited})
	}
	return e
}
