package pool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// run is the control loop. It applies resolver updates, rebalances, and
// starts the background work of slots when it is due: connection attempts,
// health checks, recycles, lifetime and idle-time replacement, closes.
func (p *Pool[C]) run(ctx context.Context) {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	interval := p.policy().RebalanceInterval
	nextPeriodic := time.Now().Add(interval)
	for {
		now := time.Now()
		p.tickClock(now)
		pol := p.policy()
		if pol.RebalanceInterval != interval {
			// SetPolicy changed it: the next periodic rebalance is
			// due no later than the new interval from now.
			interval = pol.RebalanceInterval
			nextPeriodic = earliest(nextPeriodic, now.Add(interval))
		}
		periodic := !now.Before(nextPeriodic)
		if periodic {
			nextPeriodic = now.Add(interval)
		}
		next := p.tick(ctx, now, periodic)
		if pol.SuspectAfter > 0 && pol.StallTimeout >= 0 && p.slotCount.Load() > 0 {
			// A claim taken since says nothing to the loop: look at
			// least this often for claims out on a silent backend
			// (see stall.go), at a random point of the last quarter.
			d := pol.SuspectAfter
			next = earliest(next, now.Add(d-rand.N(d/4+1)))
		}
		if next.IsZero() || next.After(nextPeriodic) {
			next = nextPeriodic
		}
		timer.Reset(max(next.Sub(now), 0))
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// tick does everything that is due at now and returns when it next has
// something to do (zero: nothing scheduled).
func (p *Pool[C]) tick(ctx context.Context, now time.Time, periodic bool) time.Time {
	var next time.Time
	p.mu.Lock()
	var update []resolver.Backend
	applyUpdate := false
	if p.hasPending {
		if !now.Before(p.pendingAt) {
			update, applyUpdate = p.pending, true
			p.pending, p.hasPending = nil, false
		} else {
			next = p.pendingAt
		}
	}
	closeQ := p.closeQ
	p.closeQ = nil
	p.mu.Unlock()

	if len(closeQ) > 0 {
		p.spawn(ctx, func(context.Context) {
			p.closeConns(closeQ)
			p.wantRebalance() // their room is free again
		})
	}
	if applyUpdate {
		p.apply(update, now)
		p.pickerDirty.Store(true)
	}
	if p.rebalance.Swap(false) || applyUpdate || periodic {
		p.rebalanceSlots(ctx, now, periodic)
	}

	next = earliest(next, p.huntTick(now))
	if d := p.expireWaiters(p.mono(now)); d != 0 {
		next = earliest(next, p.epoch.Add(time.Duration(d)))
	}
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	for _, s := range sets {
		next = earliest(next, p.maintain(ctx, s, now, periodic))
	}
	if p.policy().LeakThreshold > 0 {
		next = earliest(next, p.findLeaks(now))
	}
	if p.probeWaiting.Load() == 0 {
		p.roomWanted.Store(false)
	} else if p.needRoom.Swap(false) {
		p.makeRoom()
	}
	if p.pickerDirty.Swap(false) {
		p.rebuildPicker()
		p.failHopeless()
		if p.waiting.Load() > 0 {
			p.dispatch()
		}
	}
	return next
}

// earliest returns the earlier of a and b, ignoring zero times.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// spawn runs f on a goroutine the pool waits for on Close.
func (p *Pool[C]) spawn(ctx context.Context, f func(context.Context)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f(ctx)
	}()
}

// apply diffs a new backend set against the pool's sets. A removed
// backend's slots close (see retireLocked) without slot events:
// EventBackendRemoved says it.
func (p *Pool[C]) apply(bs []resolver.Backend, now time.Time) {
	var a after[C]
	changed := false
	note := func(kind EventKind, k resolver.Key) {
		changed = true
		if p.observing() {
			a.events = append(a.events, Event{Kind: kind, Backend: k})
		}
	}
	mnow := p.mono(now)
	p.mu.Lock()
	// A backend added to a running pool begins a slow start once it is
	// online; those the resolver reports in the pool's first moments (its
	// first update, and the next ones within startGrace, as when a joined
	// resolver's second name answers) do not.
	if !p.applied {
		p.applied, p.appliedAt = true, mnow
	}
	running := mnow-p.appliedAt > int64(startGrace)
	keep := make(map[resolver.Key]bool, len(bs))
	for _, b := range bs {
		k := b.Key()
		keep[k] = true
		b := b
		if s, ok := p.sets[k]; ok {
			if old := s.backend.Swap(&b); old.Role != b.Role {
				s.roleGen.Add(1)
			}
			s.mu.Lock()
			if s.getHealth() == HealthRemoved {
				// Back before its last connection closed: revive it.
				s.setHealthLocked(HealthUnknown, mnow)
				s.warmNext = true
				note(EventBackendAdded, k)
			}
			s.mu.Unlock()
			continue
		}
		s := newSet(p, b)
		s.warmNext = running
		p.sets[k] = s
		note(EventBackendAdded, k)
	}
	var removed []*set[C]
	for k, s := range p.sets {
		if !keep[k] {
			removed = append(removed, s)
		}
	}
	p.mu.Unlock()

	for _, s := range removed {
		s.mu.Lock()
		if s.setHealthLocked(HealthRemoved, mnow) {
			note(EventBackendRemoved, s.key)
			if s.isPrimary() {
				p.lostPrimary()
			}
		}
		s.retireLocked(&a)
		s.mu.Unlock()
	}
	if changed {
		p.mu.Lock()
		p.changedAt = now
		p.mu.Unlock()
	}
	p.finish(&a)
}

// startGrace is how long after its first backend set a pool takes the
// backends the resolver reports as part of its start (see apply).
const startGrace = 5 * time.Second

// maintain counts late background work against s's backend (see
// watchLateLocked), starts the background work of s's slots that is due,
// closes what is no longer wanted (forgetting a removed set once its last
// slot is gone), and returns when s next needs attention.
func (p *Pool[C]) maintain(ctx context.Context, s *set[C], now time.Time, periodic bool) time.Time {
	a := p.newAfter()
	var jobs []job[C]
	mnow := p.mono(now)
	s.mu.Lock()
	late, healthChanged := s.watchLateLocked(mnow, &a)
	stallAt, stalled := s.watchStallLocked(mnow, &jobs, &a)
	healthChanged = healthChanged || stalled
	if s.warmAt != 0 && mnow >= s.warmStepAt {
		// In slow start: follow its growing weight, a step at a time.
		if s.warmth(mnow) >= 1 {
			s.warmAt = 0
		} else {
			s.warmStepAt = mnow + int64(p.warmStep())
		}
		p.pickerDirty.Store(true)
		p.rebalance.Store(true)
	}
	if s.warmAt != 0 && (late == 0 || s.warmStepAt < late) {
		late = s.warmStepAt
	}
	s.probeRoleLocked(&jobs, &a)
	removed := s.getHealth() == HealthRemoved
	next, drained := p.maintainIdleLocked(s, mnow, periodic || removed, &jobs, &a)
	next = earliest(next, p.at(late))
	next = earliest(next, p.at(stallAt))
	next = earliest(next, p.maintainOthersLocked(s, mnow, &jobs, &a))
	gone := removed && len(s.slots) == 0
	s.mu.Unlock()

	if gone {
		p.mu.Lock()
		if p.sets[s.key] == s {
			delete(p.sets, s.key)
		}
		p.mu.Unlock()
	}
	p.finish(&a)
	if healthChanged {
		p.wantRebalance()
	}
	for _, j := range jobs {
		p.start(ctx, j)
	}
	if drained && p.waiting.Load() > 0 {
		p.dispatch()
	}
	return next
}

// maintainIdleLocked deals with s's idle slots. They sit on the idle stack,
// where only claims touch them. The control loop reads their check and
// expiry times, which nobody else writes, and takes them off the stack
// only when one of them is due for something, or when drain says so (on
// the periodic rebalance, which also enforces MaxIdleTime, or when the
// backend is removed). It returns when an idle slot is next due, and
// whether it drained the stack.
func (p *Pool[C]) maintainIdleLocked(s *set[C], mnow int64, drain bool, jobs *[]job[C], a *after[C]) (next time.Time, drained bool) {
	checkDue := func(sl *slot[C]) bool { return sl.recheck || (sl.checkAt != 0 && mnow >= sl.checkAt) }
	expired := func(sl *slot[C]) bool { return sl.expiresAt != 0 && mnow >= sl.expiresAt }
	wait := func(sl *slot[C]) {
		next = earliest(next, p.at(sl.checkAt))
		if sl.expiresAt != 0 {
			next = earliest(next, p.at(sl.expiresAt))
		}
	}
	for _, sl := range s.slots {
		if sl.getState() != StateIdle {
			continue
		}
		// A marked connection takes the stack off only when its
		// replacement is due: otherwise every pass would, while logins
		// fail or the turns are paced.
		due, at := s.staleDueLocked(sl, mnow)
		if checkDue(sl) || expired(sl) || due {
			drain = true
			break
		}
		if at != 0 {
			next = earliest(next, p.at(at))
		}
		wait(sl)
	}
	if !drain {
		return next, false
	}
	removed := s.getHealth() == HealthRemoved
	var kept []*slot[C]
	for _, sl := range s.drainIdleLocked() {
		maxIdle := p.policy().MaxIdleTime
		idleTooLong := maxIdle > 0 && mnow >= sl.idleSince+int64(maxIdle)
		switch {
		case sl.unwanted.Load() || removed:
			s.closeSlotLocked(sl, StateIdle, a)
		case expired(sl) || idleTooLong || s.replaceStaleLocked(sl, mnow, &next):
			*jobs = append(*jobs, s.startConnectLocked(sl, StateIdle, a))
		case checkDue(sl):
			*jobs = append(*jobs, s.startCheckLocked(sl, a))
		default:
			wait(sl)
			kept = append(kept, sl)
		}
	}
	s.restoreIdle(kept)
	return next, true
}

// maintainOthersLocked deals with s's slots that are neither idle nor
// busy: those backing off close if unwanted or reconnect when their
// backoff ends, and those waiting for a health check or recycle start it.
// It returns when a backoff next ends.
func (p *Pool[C]) maintainOthersLocked(s *set[C], mnow int64, jobs *[]job[C], a *after[C]) (next time.Time) {
	removed := s.getHealth() == HealthRemoved
	for _, sl := range append([]*slot[C](nil), s.slots...) {
		if sl.busy {
			continue
		}
		switch st := sl.getState(); st {
		case StateBackingOff:
			switch {
			case sl.unwanted.Load() || removed:
				s.closeSlotLocked(sl, st, a)
			case mnow < sl.retryAt:
				next = earliest(next, p.at(sl.retryAt))
			default:
				if ok, turn := s.mayConnectLocked(mnow); !ok {
					sl.retryAt = turn
					next = earliest(next, p.at(turn))
					continue
				}
				*jobs = append(*jobs, s.startConnectLocked(sl, st, a))
			}
		case StateChecking, StateRecycling:
			// Waiting for the check (after the backend fell under
			// suspicion) or the background recycle to start.
			*jobs = append(*jobs, s.startAwaitedLocked(sl))
		}
	}
	return next
}

// connect opens a connection for sl, which is connecting and busy.
func (p *Pool[C]) connect(ctx context.Context, sl *slot[C]) {
	s := sl.set
	cctx, cancel := context.WithTimeout(ctx, p.policy().ConnectTimeout)
	start := time.Now()
	gen := p.recycleGen.Load() // before Connect asks for credentials
	conn, err := p.conn.Connect(cctx, s.backendValue())
	if err == nil {
		sl.connGen.Store(gen)
	}
	var role resolver.Role
	if err == nil && p.role != nil {
		if role, err = p.role.Role(cctx, conn); err != nil {
			p.conn.Close(conn)
			err = fmt.Errorf("role query: %w", err)
		}
	}
	cancel()
	now := time.Now()
	p.settle(sl, now, func(a *after[C]) bool {
		return s.connectedLocked(sl, conn, role, err, now, now.Sub(start), a)
	})
}

// check runs the health check on sl's connection; sl is checking and
// busy.
func (p *Pool[C]) check(ctx context.Context, sl *slot[C]) {
	cctx, cancel := context.WithTimeout(ctx, p.policy().HealthTimeout)
	start := time.Now()
	err := p.conn.IsValid(cctx, sl.conn) // the busy goroutine owns the slot
	var role resolver.Role
	if err == nil && p.role != nil {
		if role, err = p.role.Role(cctx, sl.conn); err != nil {
			err = fmt.Errorf("role query: %w", err)
		}
	}
	cancel()
	now := time.Now()
	p.settle(sl, now, func(a *after[C]) bool {
		return sl.set.checkedLocked(sl, role, err, now, now.Sub(start), a)
	})
}

// recycle runs the recycle hook on sl's connection; sl is recycling and
// busy.
func (p *Pool[C]) recycle(ctx context.Context, sl *slot[C]) {
	cctx, cancel := context.WithTimeout(ctx, p.policy().HealthTimeout)
	start := time.Now()
	err := p.conn.OnRecycle(cctx, sl.conn) // the busy goroutine owns the slot
	cancel()
	now := time.Now()
	p.settle(sl, now, func(a *after[C]) bool {
		sl.set.recycledLocked(sl, err, now, now.Sub(start), a)
		return false
	})
}

// settle ends the background work of sl, which is busy. done, run under
// set.mu, makes the slot's transition and reports whether its backend's health
// changed. Then the connections it took close here, on this goroutine of
// the pool, its events are reported, and an idle slot is handed on.
func (p *Pool[C]) settle(sl *slot[C], now time.Time, done func(*after[C]) (healthChanged bool)) {
	s := sl.set
	a := p.newAfter()
	a.inline = true
	s.mu.Lock()
	sl.busy = false
	healthChanged := done(&a)
	to := sl.getState()
	s.mu.Unlock()
	p.finish(&a)
	if healthChanged {
		p.wantRebalance()
	}
	if to == StateIdle {
		p.handOff(sl, p.tickClock(now), true)
	}
	p.poke()
}
