package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// Connector opens, checks and closes connections of type C. The pool calls
// its methods from its own goroutines, never under a lock, and never on
// the same connection from two goroutines at once.
type Connector[C any] interface {
	// Connect opens a connection to b. ctx carries the policy's connect
	// timeout and ends when the pool closes. It must not return a
	// connection that IsValid would reject: a lazy Connect makes slots
	// churn.
	Connect(ctx context.Context, b resolver.Backend) (C, error)
	// IsValid checks an idle connection. An error closes the connection.
	IsValid(ctx context.Context, conn C) error
	// OnRecycle cleans a connection a claim gave back. An error closes
	// the connection. It runs in the background unless the policy's
	// Recycle is [RecycleInline].
	OnRecycle(ctx context.Context, conn C) error
	// Close closes a connection.
	Close(conn C) error
}

// Acquirer is an optional interface for a [Connector]: OnAcquire runs on
// the claimer's goroutine each time a connection is handed out, with the
// claim's own context and no other deadline, so it should be quick (a
// check of in-memory state, or I/O only when the connection has been idle
// a while). If it fails, the connection is discarded as broken and the
// claim takes another, up to maxAcquireAttempts connections in all.
type Acquirer[C any] interface {
	OnAcquire(ctx context.Context, conn C) error
}

// RoleReporter is an optional interface for a [Connector]: Role asks the
// server a connection is to whether it is a primary or a replica. The pool
// asks after each connection opens and after each passed health check,
// and keeps the backend's role up to date, unless the resolver gave one.
// An error counts as a failed connection or health check.
type RoleReporter[C any] interface {
	Role(ctx context.Context, conn C) (resolver.Role, error)
}

// Filter limits a claim to the backends for which it returns true. A
// filter must be cheap and must not block; a top-level function or a
// closure that captures nothing costs no allocation per claim.
type Filter func(resolver.Backend) bool

// Pool keeps connections to the backends a resolver reports. It is safe
// for concurrent use. Close must be called to stop its goroutines and
// close its connections.
type Pool[C any] struct {
	conn  Connector[C]
	acq   Acquirer[C]     // nil unless conn implements it
	role  RoleReporter[C] // nil unless conn implements it
	abort Aborter[C]      // nil unless conn implements it
	// pol is the policy, its defaults filled in. It is replaced whole by
	// SetPolicy and never changed in place, so a reader that loads it once
	// sees one consistent policy (see policy).
	pol atomic.Pointer[Policy]
	obs Observer

	picker  atomic.Pointer[picker[C]]
	waiting atomic.Int64 // queued claims
	closing atomic.Bool
	slotIDs atomic.Uint64
	// recycleGen counts the calls of Recycle (see recycle.go).
	recycleGen atomic.Uint64
	// slotCount counts the slots that are not closed, so claims can tell
	// without a lock whether the pool may still grow.
	slotCount atomic.Int64
	// closingN counts connections waiting to be closed: they still hold
	// room under MaxSlots until they are.
	closingN atomic.Int64
	// probing counts the probe connections open or opening (see
	// stall.go): they take room under MaxSlots as slots do.
	probing atomic.Int64
	// needRoom asks the control loop to close an idle connection so that
	// a probe connection fits under the caps (see makeRoom).
	needRoom atomic.Bool
	// probeWaiting counts the sets whose probe waits for room under
	// MaxSlots (set.probeReserved).
	probeWaiting atomic.Int64
	// roomWanted: makeRoom found nothing to close for a waiting probe, so
	// the next claimed connection to come back is closed to make room
	// (see set.releasedLocked).
	roomWanted atomic.Bool
	// clock is a coarse reading of the time, in nanoseconds since epoch,
	// moved forward by the control loop (at least every
	// RebalanceInterval) and by background work. Claims and releases read
	// it instead of the system clock, which costs them nothing; see now.
	clock atomic.Int64
	epoch time.Time
	// rebalance asks the control loop to recompute slot counts.
	rebalance atomic.Bool
	// capsCut: SetPolicy lowered MaxSlots or MaxPerBackend, so the next
	// rebalance closes the surplus at once rather than gently.
	capsCut atomic.Bool
	// setMu serializes SetPolicy calls.
	setMu sync.Mutex
	// paused: Pause holds new claims in the queue (see runtime.go).
	paused atomic.Bool
	// watchers counts the callers of Pause and Drain waiting for claims
	// to end or connections to close; while there are some, quiet is
	// closed, and forgotten, whenever one does (see changed).
	watchers atomic.Int32
	quietMu  sync.Mutex
	quiet    chan struct{}
	// pickerDirty asks the control loop to rebuild the picker.
	pickerDirty atomic.Bool
	// hunting: the primary was lost, and the pool asks every backend's
	// role until one answers primary (see hunt.go); huntSince is when,
	// on the coarse clock, and huntFound says a primary answered.
	hunting   atomic.Bool
	huntSince atomic.Int64
	huntFound atomic.Bool
	hunt      huntState // the control loop's own

	wake     chan struct{} // pokes the control loop; capacity 1
	returned chan struct{} // a claim came back while closing; capacity 1
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the control loop, the resolver and slot I/O

	// Lock order: wmu, then mu, then a set's mu; no code takes a lock
	// while it holds a later one. wmu is held over a set's mu and over mu
	// when a claim dispatched from the queue meets an unwanted idle slot
	// (takeIdle closes it under set.mu, then queues its connection under
	// mu), and mu over a set's mu when apply revives a returning backend.
	// No lock is held during a Connector call or an Observer call, except
	// that a filter runs under wmu.

	wmu     sync.Mutex // protects waiters and free
	waiters waitQueue[C]
	free    []*waiter[C]

	mu         sync.Mutex // protects the fields below
	sets       map[resolver.Key]*set[C]
	pending    []resolver.Backend
	hasPending bool
	pendingAt  time.Time
	updates    int
	applied    bool      // apply has run
	appliedAt  int64     // when apply first ran, on the pool's clock
	changedAt  time.Time // when apply last added or removed a backend
	// What the resolver said of its lookups (see report).
	resolverErr   string    // its last error, kept after it recovers
	resolverErrAt time.Time // when it happened
	confirmedAt   time.Time // when a lookup last confirmed the set
	lookupErr     error     // the last lookup's error; nil once one succeeds
	known         int       // backends in the resolver's last set
	loopDone      bool
	closeQ        []doomed[C]
	// drained holds the backends Drain took out of service, kept by key
	// so that one the resolver drops and reports again stays drained.
	drained map[resolver.Key]bool
	stats   poolCounters

	closeOnce sync.Once
}

type poolCounters struct {
	timeouts, failures uint64
	leaks              uint64 // claims held past LeakThreshold
}

// New starts a pool of connections to the backends r reports, opened with
// c. It returns an error only for a policy it cannot use; backends that
// cannot be reached are retried in the background.
func New[C any](r resolver.Resolver, c Connector[C], pol Policy) (*Pool[C], error) {
	if r == nil || c == nil {
		return nil, errors.New("pool: New needs a resolver and a connector")
	}
	pol, err := pol.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pool[C]{
		conn:     c,
		obs:      pol.Observer,
		wake:     make(chan struct{}, 1),
		returned: make(chan struct{}, 1),
		sets:     make(map[resolver.Key]*set[C]),
		drained:  make(map[resolver.Key]bool),
		epoch:    time.Now(),
	}
	p.pol.Store(&pol)
	p.acq, _ = c.(Acquirer[C])
	p.role, _ = c.(RoleReporter[C])
	p.abort, _ = c.(Aborter[C])
	p.picker.Store(&picker[C]{})
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go p.run(ctx)
	go func() {
		defer p.wg.Done()
		err := r.Run(ctx, receiver[C]{p})
		if err != nil && ctx.Err() == nil {
			p.report(fmt.Errorf("pool: resolver stopped: %w", err))
		}
	}()
	return p, nil
}

// policy returns the policy in force: one atomic load, which the claim
// path may afford. Code that reads several fields for one decision loads
// it once.
func (p *Pool[C]) policy() *Policy { return p.pol.Load() }

// receiver is the [resolver.Receiver] a pool gives its resolver.
type receiver[C any] struct{ p *Pool[C] }

func (r receiver[C]) Update(bs []resolver.Backend) { r.p.update(bs) }
func (r receiver[C]) Report(err error)             { r.p.report(err) }

// report takes the outcome of a resolver's lookup: nil confirms the set,
// an error is kept for Stats and claim errors. Before the resolver has
// reported any backend, an error is its verdict: claims fail at once,
// saying why, rather than wait for a set that may never come.
func (p *Pool[C]) report(err error) {
	now := time.Now()
	p.mu.Lock()
	was := p.lookupErr
	p.lookupErr = err
	if err == nil {
		p.confirmedAt = now
	} else {
		p.resolverErr, p.resolverErrAt = err.Error(), now
	}
	p.mu.Unlock()
	if p.observing() {
		switch {
		case err != nil:
			p.emit(Event{Kind: EventResolverFailed, Err: err})
		case was != nil:
			p.emit(Event{Kind: EventResolverRecovered})
		}
	}
	if (err == nil) != (was == nil) {
		// The picker carries the verdict claims fail with.
		p.pickerDirty.Store(true)
		p.poke()
	}
}

// update takes a whole backend set from the resolver. Backends with an
// unusable address and repeated keys are dropped, and the first problem is
// kept for [Pool.Stats].
func (p *Pool[C]) update(bs []resolver.Backend) {
	clean := make([]resolver.Backend, 0, len(bs))
	seen := make(map[resolver.Key]bool, len(bs))
	var problem error
	for _, b := range bs {
		if err := b.Validate(); err != nil {
			problem = cmpErr(problem, err)
			continue
		}
		if seen[b.Key()] {
			problem = cmpErr(problem, fmt.Errorf("pool: resolver reported %s twice", b.Key()))
			continue
		}
		seen[b.Key()] = true
		clean = append(clean, b)
	}
	now := time.Now()
	p.mu.Lock()
	if problem != nil {
		p.resolverErr = problem.Error()
	}
	if !p.hasPending {
		p.pendingAt = now.Add(p.policy().RebalanceDelay)
		if p.updates == 0 {
			p.pendingAt = now
		}
	}
	p.pending, p.hasPending = clean, true
	p.known = len(clean)
	p.updates++
	p.mu.Unlock()
	p.poke()
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// clockNow reads the monotonic clock, in nanoseconds since the pool's
// epoch: cheaper than time.Now, which also reads the wall clock.
func (p *Pool[C]) clockNow() int64 { return int64(time.Since(p.epoch)) }

// mono converts t to nanoseconds since the pool's epoch.
func (p *Pool[C]) mono(t time.Time) int64 { return int64(t.Sub(p.epoch)) }

// at converts a time on the pool's clock back to a time.Time; zero stays
// zero.
func (p *Pool[C]) at(m int64) time.Time {
	if m == 0 {
		return time.Time{}
	}
	return p.epoch.Add(time.Duration(m))
}

// tickClock moves the coarse clock forward to t.
func (p *Pool[C]) tickClock(t time.Time) int64 {
	m := p.mono(t)
	for {
		old := p.clock.Load()
		if m <= old || p.clock.CompareAndSwap(old, m) {
			return max(m, old)
		}
	}
}

// now returns the coarse clock: behind the real time by at most the
// time since the control loop or a background goroutine last ran.
func (p *Pool[C]) now() int64 { return p.clock.Load() }

// poke wakes the control loop.
func (p *Pool[C]) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// wantRebalance asks the control loop to recompute slot counts soon.
func (p *Pool[C]) wantRebalance() {
	if p.slotCount.Load()+p.closingN.Load() >= int64(p.policy().MaxSlots) && p.pickerHealthy() {
		return // nothing to grow into
	}
	if !p.rebalance.Load() && p.rebalance.CompareAndSwap(false, true) {
		p.poke()
	}
}

// Close stops the pool as [database/sql.DB.Close] does: claims fail with
// [ErrClosed], the resolver and every goroutine of the pool stop, idle
// connections close at once, and a connection still claimed closes when
// its claim ends. Close does not wait for those claims; [Pool.Shutdown]
// does. It returns nil, and may be called more than once, also while
// Shutdown waits.
func (p *Pool[C]) Close() error {
	p.stop()
	return nil
}

// Shutdown stops the pool as Close does, then waits until every claimed
// connection has come back and closed, or until ctx ends. Then it closes
// the connections still claimed, whose claims end, and returns an error
// wrapping ctx's error that counts them. Without a deadline or a
// cancellation on ctx it may wait for ever.
func (p *Pool[C]) Shutdown(ctx context.Context) error {
	p.stop()
	for p.slotCount.Load()+p.closingN.Load() > 0 {
		select {
		case <-p.returned:
		case <-ctx.Done():
			a := after[C]{inline: true}
			p.eachSetLocked(&a, (*set[C]).revokeClaimsLocked)
			p.finish(&a)
			if n := len(a.closes); n > 0 {
				return fmt.Errorf("pool: closed %d connections still claimed: %w", n, ctx.Err())
			}
			return nil
		}
	}
	return nil
}

// stop makes the pool refuse claims, stops its goroutines and closes what
// no claim holds. Each call does the last part again, which finds nothing
// left to do once the connections have closed.
func (p *Pool[C]) stop() {
	p.closeOnce.Do(func() {
		p.closing.Store(true)
		p.wmu.Lock()
		for w := p.waiters.head; w != nil; w = w.next {
			p.waiting.Add(-1)
			w.queued = false
			w.ch <- waitResult[C]{err: ErrClosed}
		}
		p.waiters = waitQueue[C]{}
		p.wmu.Unlock()
		p.cancel()
	})
	p.wg.Wait()

	// The control loop has stopped: from now on closes happen where they
	// are made, and what it had queued closes here.
	p.mu.Lock()
	p.loopDone = true
	a := after[C]{inline: true, closes: p.closeQ}
	p.closeQ = nil
	p.mu.Unlock()
	p.eachSetLocked(&a, (*set[C]).closeUnclaimedLocked)
	p.finish(&a)
}

// eachSetLocked runs the transition f on every set, with its mu held.
func (p *Pool[C]) eachSetLocked(a *after[C], f func(*set[C], *after[C])) {
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	for _, s := range sets {
		s.mu.Lock()
		f(s, a)
		s.mu.Unlock()
	}
}

// setList returns the sets; p.mu must be held.
func (p *Pool[C]) setList() []*set[C] {
	out := make([]*set[C], 0, len(p.sets))
	for _, s := range p.sets {
		out = append(out, s)
	}
	return out
}

// setFor returns the set of backend k, or nil.
func (p *Pool[C]) setFor(k resolver.Key) *set[C] {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sets[k]
}

// SetRole records what the server of backend k says its role is, as a
// [RoleReporter] would. A role the resolver gives takes precedence. Claims
// see the new role as soon as the control loop has run.
func (p *Pool[C]) SetRole(k resolver.Key, r resolver.Role) {
	if s := p.setFor(k); s != nil && s.learnRole(r) {
		p.poke()
	}
}

// Recheck has the idle connections of backend k health-checked before
// they are handed out again, as after a discarded connection, but without
// closing any: for when a backend may have changed (its role, say).
func (p *Pool[C]) Recheck(k resolver.Key) {
	s := p.setFor(k)
	if s == nil {
		return
	}
	a := p.newAfter()
	s.mu.Lock()
	s.suspectLocked(&a)
	s.mu.Unlock()
	p.finish(&a)
	p.poke()
}

// Usable reports whether some backend that f accepts is online or not
// yet known to be offline.
func (p *Pool[C]) Usable(f Filter) bool {
	online, _ := p.picker.Load().usable(f)
	return online
}

// TryClaimFiltered claims an idle connection to a backend f accepts, if
// there is one now; it never waits. Like [Pool.ClaimFiltered] it runs the
// [Acquirer] hook with ctx and takes another connection when the hook
// fails.
func (p *Pool[C]) TryClaimFiltered(ctx context.Context, f Filter) (Claim[C], bool) {
	for range maxAcquireAttempts {
		if p.closing.Load() {
			return Claim[C]{}, false
		}
		p.tickClock(time.Now())
		c, ok := p.take(p.picker.Load(), f)
		if !ok {
			return Claim[C]{}, false
		}
		if p.paused.Load() {
			p.putBack(c)
			return Claim[C]{}, false
		}
		if p.observing() {
			p.claimedNow(c)
		}
		if p.acq == nil || p.acquireHook(ctx, c) == nil {
			if p.policy().LeakThreshold > 0 {
				p.traceClaim(c, 0)
			}
			return c, true
		}
	}
	return Claim[C]{}, false
}

// FiltersChanged tells the pool that what claim filters accept may have
// changed for a reason it cannot see (a replica crossed a lag limit,
// say). Soon after, on the control loop, queued claims are offered the
// idle connections again, and those no backend can serve any more fail.
// It is cheap, and safe to call from any goroutine, also after Close.
func (p *Pool[C]) FiltersChanged() {
	p.pickerDirty.Store(true)
	p.poke()
}
