package pool

import (
	"context"
	"fmt"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// This file holds what an operator changes on a running pool: its policy
// (SetPolicy), a backend's drain and the pause of every claim.

// Policy returns the policy the pool runs with, its defaults filled in.
// To change some fields, change them on this copy and give it to
// [Pool.SetPolicy].
func (p *Pool[C]) Policy() Policy { return *p.policy() }

// SetPolicy changes the policy of the running pool. pol is taken as [New]
// takes it: zero fields mean their defaults, and a policy New would refuse
// is refused with the same error (wrapping [ErrBadPolicy]), the pool
// keeping its policy. The Observer is the one given to New; pol's is
// ignored.
//
// One call replaces the whole policy, rather than a setter per field as
// HikariCP (setMaximumPoolSize, setMinimumIdle, setConnectionTimeout…)
// and database/sql (SetMaxOpenConns…) have: fields that go together
// (MaxSlots and Spares, BackoffMin and BackoffMax) are checked together
// and change together, and claims never see half a change. pgxpool has
// no live setters at all. Read the policy with [Pool.Policy], change the
// fields and set it; of two concurrent read-change-set sequences, the
// later set wins whole.
//
// Claims and background work that start after SetPolicy returns see the
// new policy. How each field takes effect:
//
//   - MaxSlots, MaxPerBackend and Spares: a rebalance runs at once. The
//     pool grows at once if claims want it. When a cap goes down, the
//     surplus closes at once: slots without a connection and idle ones
//     first, and claimed ones as their claims end (they are never taken
//     from a claim). No slot opens while the slots and the connections
//     still closing are at a cap or above it, so the count only falls
//     until it is under the new caps, and stays there. Spares going down
//     closes the surplus idle connections gently, as the periodic
//     rebalance does.
//   - ClaimTimeout applies to the claims already waiting too, counted
//     from when each began to wait. MaxWaiters applies to claims that
//     queue from now on.
//   - HealthInterval: the next check of each connection is due no later
//     than the new interval from now (none, if turned off).
//   - RebalanceInterval: the next periodic rebalance is due no later than
//     the new interval from now.
//   - MaxLifetime applies to connections opened from now on; every other
//     field is read each time it is used.
func (p *Pool[C]) SetPolicy(pol Policy) error {
	pol, err := pol.withDefaults()
	if err != nil {
		return err
	}
	p.setMu.Lock()
	defer p.setMu.Unlock()
	old := p.policy()
	pol.Observer = old.Observer
	p.pol.Store(&pol)

	now := time.Now()
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	for _, s := range sets {
		s.mu.Lock()
		// A set created before the change sized its idle stack for the
		// old caps.
		s.idle.max = max(s.idle.max, min(pol.MaxPerBackend, pol.MaxSlots))
		if pol.HealthInterval != old.HealthInterval {
			for _, sl := range s.slots {
				if next := p.nextCheckFrom(now); sl.hasConn && (next == 0 || sl.checkAt == 0 || next < sl.checkAt) {
					sl.checkAt = next
				}
			}
		}
		s.mu.Unlock()
	}
	if pol.ClaimTimeout != old.ClaimTimeout {
		p.wmu.Lock()
		for w := p.waiters.head; w != nil; w = w.next {
			w.deadline = w.start + int64(pol.ClaimTimeout)
		}
		p.wmu.Unlock()
	}
	if pol.MaxSlots < old.MaxSlots || pol.MaxPerBackend < old.MaxPerBackend {
		p.capsCut.Store(true)
	}
	p.rebalance.Store(true)
	p.poke()
	return nil
}

// Pause stops handing out connections: claims that start from now on wait
// in the queue, bounded as ever by their contexts and the claim timeout
// (and MaxWaiters), but not failed when no backend is online, while the
// claims already out finish. Then Pause
// returns nil, or, if ctx ends first, an error wrapping ctx's error that
// counts the claims still out; the pool stays paused either way, until
// [Pool.Resume]. With a ctx already done it does not wait. Connections
// are still opened, checked and recycled while the pool is paused, but
// the queued claims do not make it grow.
//
// It is PgBouncer's PAUSE and HikariCP's suspendPool. A planned
// switchover (moving the primary, restarting a server) done between Pause
// and Resume shows the application latency instead of errors.
func (p *Pool[C]) Pause(ctx context.Context) error {
	// Under wmu: a hand-off to a queued claim under way ends before the
	// claims are counted, and later ones see the pause.
	p.wmu.Lock()
	was := p.paused.Swap(true)
	p.wmu.Unlock()
	if !was && p.observing() {
		p.emit(Event{Kind: EventPaused})
	}
	if err := p.waitUntil(ctx, func() bool { return p.claimsOut() == 0 }); err != nil {
		return fmt.Errorf("pool: paused with %d claims still out: %w", p.claimsOut(), err)
	}
	return nil
}

// Resume ends a [Pool.Pause]: the queued claims are served, oldest first,
// and the pool grows for them if it may. It does nothing to a pool that is
// not paused.
func (p *Pool[C]) Resume() {
	if !p.paused.Swap(false) {
		return
	}
	if p.observing() {
		p.emit(Event{Kind: EventResumed})
	}
	p.dispatch()
	p.pickerDirty.Store(true) // fails the queued claims no backend can serve
	p.rebalance.Store(true)
	p.poke()
}

// claimsOut counts the claims out now.
func (p *Pool[C]) claimsOut() int {
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	n := 0
	for _, s := range sets {
		n += int(s.inUse.Load())
	}
	return n
}

// putBack ends claim c, just taken, as if it had never been: for a claim
// that finds the pool paused once it has its slot.
func (p *Pool[C]) putBack(c Claim[C]) {
	sl := c.slot
	if !sl.claim.CompareAndSwap(c.gen, 0) {
		return
	}
	sl.set.inUse.Add(-1)
	p.handOff(sl, p.now(), false)
	p.changed()
}

// Drain takes backend k out of service: it gets no new claims and no new
// connections, its idle connections close at once, and its claimed ones
// close as their claims end. Then Drain returns nil, once the backend has
// no connection left (none open, opening or closing), or, if ctx ends
// first, an error wrapping ctx's error; the backend stays drained either
// way, until [Pool.Undrain], also if the resolver drops it and reports it
// again. With a ctx already done it does not wait. Claims that only k
// could serve wait for it, bounded by their contexts and the claim
// timeout. It fails, wrapping [ErrUnknownBackend], for a backend the pool
// does not have.
//
// It is HikariCP's softEvictConnections for one backend, which also keeps
// new connections from it; PgBouncer has no per-server drain, but a
// server taken out of its configuration and RELOADed closes alike.
func (p *Pool[C]) Drain(ctx context.Context, k resolver.Key) error {
	p.mu.Lock()
	s := p.sets[k]
	if s == nil {
		p.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownBackend, k)
	}
	p.drained[k] = true
	p.mu.Unlock()
	a := p.newAfter()
	s.mu.Lock()
	if !s.drained.Swap(true) {
		s.retireLocked(&a)
		a.event(Event{Kind: EventBackendDrained, Backend: k})
	}
	s.mu.Unlock()
	p.finish(&a)
	p.pickerDirty.Store(true)
	p.rebalance.Store(true) // its room goes to the others
	p.poke()
	empty := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.slots) == 0 && s.closing.Load() == 0
	}
	if err := p.waitUntil(ctx, empty); err != nil {
		s.mu.Lock()
		n := len(s.slots)
		s.mu.Unlock()
		return fmt.Errorf("pool: %s drained with %d connections left: %w", k, n, err)
	}
	return nil
}

// Undrain puts a backend [Pool.Drain] took out of service back: it gets
// connections and claims again, starting as a backend added to the running
// pool does (see Policy.SlowStart). It fails, wrapping
// [ErrUnknownBackend], for a backend the pool neither has nor has drained.
func (p *Pool[C]) Undrain(k resolver.Key) error {
	p.mu.Lock()
	was := p.drained[k]
	delete(p.drained, k)
	s := p.sets[k]
	p.mu.Unlock()
	if s == nil {
		if !was {
			return fmt.Errorf("%w: %s", ErrUnknownBackend, k)
		}
		return nil
	}
	a := p.newAfter()
	s.mu.Lock()
	if s.drained.Swap(false) {
		a.event(Event{Kind: EventBackendUndrained, Backend: k})
		if s.getHealth() == HealthOnline {
			// It left the round robin: it comes back as a new backend
			// would.
			s.setHealthLocked(HealthUnknown, p.clockNow())
			s.warmNext = true
		}
	}
	s.mu.Unlock()
	p.finish(&a)
	p.pickerDirty.Store(true)
	p.rebalance.Store(true)
	p.poke()
	return nil
}

// closeUnwantedIdle closes the unwanted slots on s's idle stack.
func (s *set[C]) closeUnwantedIdle() {
	a := s.p.newAfter()
	s.mu.Lock()
	var kept []*slot[C]
	for _, sl := range s.drainIdleLocked() {
		if sl.unwanted.Load() {
			s.closeSlotLocked(sl, StateIdle, &a)
		} else {
			kept = append(kept, sl)
		}
	}
	s.restoreIdle(kept)
	s.mu.Unlock()
	s.p.finish(&a)
}

// waitUntil returns nil once cond holds, or ctx's error once ctx ends.
// cond is tried again each time a claim ends, a slot closes or a
// connection is closed (see changed).
func (p *Pool[C]) waitUntil(ctx context.Context, cond func() bool) error {
	p.watchers.Add(1)
	defer p.watchers.Add(-1)
	for {
		p.quietMu.Lock()
		if p.quiet == nil {
			p.quiet = make(chan struct{})
		}
		ch := p.quiet
		p.quietMu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// changed wakes the callers of waitUntil, if any: a claim ended, a slot
// closed or a connection was closed. It costs one atomic load when none
// waits. The caller may hold a set's mu.
func (p *Pool[C]) changed() {
	if p.watchers.Load() == 0 {
		return
	}
	p.quietMu.Lock()
	if p.quiet != nil {
		close(p.quiet)
		p.quiet = nil
	}
	p.quietMu.Unlock()
}
