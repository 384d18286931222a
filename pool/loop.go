package pool

import (
	"context"
	"fmt"
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
	nextPeriodic := time.Now().Add(p.pol.RebalanceInterval)
	for {
		now := time.Now()
		p.tickClock(now)
		periodic := !now.Before(nextPeriodic)
		if periodic {
			nextPeriodic = now.Add(p.pol.RebalanceInterval)
		}
		next := p.tick(ctx, now, periodic)
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
	soonest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}

	p.mu.Lock()
	var update []resolver.Backend
	applyUpdate := false
	if p.hasPending {
		if !now.Before(p.pendingAt) {
			update, applyUpdate = p.pending, true
			p.pending, p.hasPending = nil, false
		} else {
			soonest(p.pendingAt)
		}
	}
	closeQ := p.closeQ
	p.closeQ = nil
	p.mu.Unlock()

	if len(closeQ) > 0 {
		p.spawn(ctx, func(context.Context) {
			closeAll(p.conn, closeQ)
			p.closingN.Add(-int64(len(closeQ)))
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

	if d := p.expireWaiters(p.mono(now)); d != 0 {
		soonest(p.epoch.Add(time.Duration(d)))
	}
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	for _, s := range sets {
		soonest(p.maintain(ctx, s, now, periodic))
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

// spawn runs f on a goroutine the pool waits for on Close.
func (p *Pool[C]) spawn(ctx context.Context, f func(context.Context)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f(ctx)
	}()
}

// apply diffs a new backend set against the pool's sets.
func (p *Pool[C]) apply(bs []resolver.Backend, now time.Time) {
	var events []Event
	p.mu.Lock()
	keep := make(map[resolver.Key]bool, len(bs))
	for _, b := range bs {
		k := b.Key()
		keep[k] = true
		b := b
		if s, ok := p.sets[k]; ok {
			s.backend.Store(&b)
			s.mu.Lock()
			if s.getHealth() == HealthRemoved {
				// Back before its last connection closed: revive it.
				s.setHealthLocked(HealthUnknown)
				events = append(events, Event{Kind: EventBackendAdded, Backend: k})
			}
			s.mu.Unlock()
			continue
		}
		p.sets[k] = newSet(p, b)
		events = append(events, Event{Kind: EventBackendAdded, Backend: k})
	}
	var removed []*set[C]
	for k, s := range p.sets {
		if !keep[k] {
			removed = append(removed, s)
		}
	}
	p.mu.Unlock()

	var toClose []C
	for _, s := range removed {
		s.mu.Lock()
		if s.setHealthLocked(HealthRemoved) {
			events = append(events, Event{Kind: EventBackendRemoved, Backend: s.key})
		}
		for _, sl := range s.slots {
			sl.unwanted.Store(true)
		}
		for _, sl := range s.drainIdleLocked() {
			toClose = append(toClose, s.detachLocked(sl))
			s.removeSlotLocked(sl)
		}
		for _, sl := range append([]*slot[C](nil), s.slots...) {
			if sl.getState() == StateBackingOff && !sl.busy {
				if sl.stale {
					toClose = append(toClose, s.detachLocked(sl))
				}
				s.removeSlotLocked(sl)
			}
		}
		s.mu.Unlock()
	}
	if len(events) > 0 {
		p.mu.Lock()
		p.changedAt = now
		p.mu.Unlock()
	}
	for _, c := range toClose {
		p.closeConn(c)
	}
	if p.observing() {
		for _, e := range events {
			p.emit(e)
		}
	}
}

// maintain starts the background work of s's slots that is due, closes
// what is no longer wanted (forgetting a removed set once its last slot
// is gone), and returns when s next needs attention.
//
// Idle slots sit on the idle stack, where only claims touch them. The
// control loop reads their check and expiry times, which nobody else
// writes, and takes them off the stack only when one of them is due
// for something, or on the periodic rebalance, which also enforces
// MaxIdleTime.
func (p *Pool[C]) maintain(ctx context.Context, s *set[C], now time.Time, periodic bool) (next time.Time) {
	soonest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	type job struct {
		sl     *slot[C]
		kind   State // StateConnecting, StateChecking or StateRecycling
		old    C     // a connection to close first
		hasOld bool
	}
	var (
		jobs    []job
		toClose []C
		events  []Event
	)
	observing := p.observing()
	change := func(sl *slot[C], from, to State) {
		if observing {
			events = append(events, Event{Kind: EventSlotState, Backend: s.key, Slot: sl.id, From: from, To: to})
		}
	}
	mnow := p.mono(now)
	removed := s.getHealth() == HealthRemoved

	s.mu.Lock()
	drain := periodic || removed
	for _, sl := range s.slots {
		if sl.getState() != StateIdle {
			continue
		}
		due := sl.recheck || (sl.checkAt != 0 && mnow >= sl.checkAt) ||
			(sl.expiresAt != 0 && mnow >= sl.expiresAt)
		if due {
			drain = true
			break
		}
		soonest(p.at(sl.checkAt))
		if sl.expiresAt != 0 {
			soonest(p.at(sl.expiresAt))
		}
	}
	if drain {
		for _, sl := range s.drainIdleLocked() {
			expired := sl.expiresAt != 0 && mnow >= sl.expiresAt
			idleTooLong := p.pol.MaxIdleTime > 0 && mnow >= sl.idleSince+int64(p.pol.MaxIdleTime)
			switch {
			case sl.unwanted.Load() || removed:
				toClose = append(toClose, s.detachLocked(sl))
				s.removeSlotLocked(sl)
				change(sl, StateIdle, StateClosed)
			case expired || idleTooLong:
				j := job{sl: sl, kind: StateConnecting, old: sl.conn, hasOld: true}
				var zero C
				sl.conn = zero
				sl.setState(StateConnecting)
				sl.busy = true
				change(sl, StateIdle, StateConnecting)
				jobs = append(jobs, j)
			case sl.recheck || (sl.checkAt != 0 && mnow >= sl.checkAt):
				sl.setState(StateChecking)
				sl.busy = true
				change(sl, StateIdle, StateChecking)
				jobs = append(jobs, job{sl: sl, kind: StateChecking})
			default:
				soonest(p.at(sl.checkAt))
				if sl.expiresAt != 0 {
					soonest(p.at(sl.expiresAt))
				}
				s.pushIdle(sl, sl.idleSince)
			}
		}
	}
	for _, sl := range append([]*slot[C](nil), s.slots...) {
		if sl.busy {
			continue
		}
		switch st := sl.getState(); st {
		case StateBackingOff:
			if sl.unwanted.Load() || removed {
				if sl.stale {
					toClose = append(toClose, s.detachLocked(sl))
				}
				s.removeSlotLocked(sl)
				change(sl, st, StateClosed)
				continue
			}
			if mnow < sl.retryAt {
				soonest(p.at(sl.retryAt))
				continue
			}
			j := job{sl: sl, kind: StateConnecting}
			if sl.stale {
				j.old, j.hasOld = sl.conn, true
				var zero C
				sl.conn, sl.stale = zero, false
			}
			sl.setState(StateConnecting)
			sl.busy = true
			change(sl, st, StateConnecting)
			jobs = append(jobs, j)
		case StateChecking, StateRecycling:
			// Waiting for the check (after the backend fell under
			// suspicion) or the background recycle to start.
			sl.busy = true
			jobs = append(jobs, job{sl: sl, kind: st})
		}
	}
	gone := removed && len(s.slots) == 0
	s.mu.Unlock()

	if gone {
		p.mu.Lock()
		if p.sets[s.key] == s {
			delete(p.sets, s.key)
		}
		p.mu.Unlock()
	}
	for _, c := range toClose {
		p.closeConn(c)
	}
	for _, j := range jobs {
		switch j.kind {
		case StateConnecting:
			p.spawn(ctx, func(ctx context.Context) {
				if j.hasOld {
					p.conn.Close(j.old)
				}
				p.connect(ctx, s, j.sl)
			})
		case StateChecking:
			p.spawn(ctx, func(ctx context.Context) { p.check(ctx, s, j.sl, false) })
		case StateRecycling:
			p.spawn(ctx, func(ctx context.Context) { p.check(ctx, s, j.sl, true) })
		}
	}
	for _, e := range events {
		p.emit(e)
	}
	if drain && p.waiting.Load() > 0 {
		p.dispatch()
	}
	return next
}

// connect opens a connection for sl, which is connecting and busy.
func (p *Pool[C]) connect(ctx context.Context, s *set[C], sl *slot[C]) {
	b := s.backendValue()
	cctx, cancel := context.WithTimeout(ctx, p.pol.ConnectTimeout)
	start := time.Now()
	conn, err := p.conn.Connect(cctx, b)
	var role resolver.Role
	if err == nil && p.role != nil {
		if role, err = p.role.Role(cctx, conn); err != nil {
			p.conn.Close(conn)
			err = fmt.Errorf("role query: %w", err)
		}
	}
	cancel()
	now := time.Now()
	observing := p.observing()
	var (
		events        []Event
		closeIt       bool
		healthChanged bool
	)
	to := StateIdle
	s.mu.Lock()
	sl.busy = false
	gone := sl.unwanted.Load() || s.getHealth() == HealthRemoved || p.closing.Load()
	switch {
	case err != nil:
		sl.attempts++
		s.failStreak++
		s.noteErrLocked(err, now)
		if gone {
			s.removeSlotLocked(sl)
			to = StateClosed
		} else {
			sl.setState(StateBackingOff)
			sl.retryAt = p.mono(now.Add(p.backoff(sl.attempts)))
			to = StateBackingOff
		}
		if h := s.getHealth(); h != HealthOffline && h != HealthRemoved &&
			s.failStreak >= p.pol.OfflineAfter && s.connectedLocked() == 0 {
			healthChanged = s.setHealthLocked(HealthOffline)
			if observing {
				events = append(events, Event{Kind: EventBackendOffline, Backend: s.key, Err: err})
			}
		}
		if observing {
			events = append(events, Event{Kind: EventConnectFailed, Backend: s.key, Slot: sl.id, Err: err, Duration: now.Sub(start)})
		}
	case gone:
		p.closingN.Add(1)
		s.removeSlotLocked(sl)
		to, closeIt = StateClosed, true
	default:
		sl.conn = conn
		sl.attempts = 0
		s.failStreak = 0
		sl.expiresAt = p.lifetimeFrom(now)
		sl.checkAt = p.nextCheckFrom(now)
		sl.recheck = false
		if p.role != nil {
			s.learnRole(role)
		}
		// Idle before the lock goes, so the control loop never takes it
		// for a slot waiting for work; handOff below passes it on.
		sl.setState(StateIdle)
		s.suspect.Store(false)
		if s.setHealthLocked(HealthOnline) {
			healthChanged = true
			if observing {
				events = append(events, Event{Kind: EventBackendOnline, Backend: s.key})
			}
		}
		if observing {
			events = append(events, Event{Kind: EventConnect, Backend: s.key, Slot: sl.id, Duration: now.Sub(start)})
		}
	}
	s.mu.Unlock()
	if closeIt {
		p.conn.Close(conn)
		p.closingN.Add(-1)
	}
	if healthChanged {
		p.wantRebalance()
	}
	for _, e := range events {
		p.emit(e)
	}
	if observing {
		p.emit(Event{Kind: EventSlotState, Backend: s.key, Slot: sl.id, From: StateConnecting, To: to})
	}
	if to == StateIdle {
		p.handOff(sl, p.tickClock(now))
	}
	p.poke()
}

// check runs the health check (or, if recycle, the recycle hook) on sl's
// connection; sl is checking or recycling and busy.
func (p *Pool[C]) check(ctx context.Context, s *set[C], sl *slot[C], recycle bool) {
	conn := sl.conn // the busy goroutine owns the slot
	from := sl.getState()
	cctx, cancel := context.WithTimeout(ctx, p.pol.HealthTimeout)
	start := time.Now()
	var (
		err     error
		role    resolver.Role
		hasRole bool
	)
	if recycle {
		err = p.conn.OnRecycle(cctx, conn)
	} else {
		err = p.conn.IsValid(cctx, conn)
		if err == nil && p.role != nil {
			if role, err = p.role.Role(cctx, conn); err != nil {
				err = fmt.Errorf("role query: %w", err)
			}
			hasRole = err == nil
		}
	}
	cancel()
	now := time.Now()
	closeIt := false
	var events []Event
	to := StateIdle
	s.mu.Lock()
	sl.busy = false
	switch {
	case sl.unwanted.Load() || s.getHealth() == HealthRemoved || p.closing.Load():
		s.detachLocked(sl)
		s.removeSlotLocked(sl)
		to, closeIt = StateClosed, true
	case err != nil:
		s.noteErrLocked(err, now)
		s.suspectLocked(&events)
		to = s.replaceLocked(sl)
	case recycle && sl.recheck:
		// The backend fell under suspicion while this connection was
		// out: check it before anyone gets it.
		sl.setState(StateChecking)
		to = StateChecking
	default:
		if hasRole {
			s.learnRole(role)
		}
		if !recycle {
			sl.checkAt = p.nextCheckFrom(now)
			if sl.recheck {
				// The backend answered after a failure: stop suspecting it.
				s.suspect.Store(false)
				sl.recheck = false
			}
		}
		sl.setState(StateIdle) // see connect
	}
	s.mu.Unlock()
	if closeIt {
		p.conn.Close(conn)
		p.closingN.Add(-1)
	}
	if p.observing() {
		kind := EventHealthCheck
		if recycle {
			kind = EventRecycle
		}
		if err != nil {
			kind++ // the matching ...Failed kind
		}
		p.emit(Event{Kind: kind, Backend: s.key, Slot: sl.id, Err: err, Duration: now.Sub(start)})
		p.emit(Event{Kind: EventSlotState, Backend: s.key, Slot: sl.id, From: from, To: to})
		for _, e := range events {
			p.emit(e)
		}
	}
	if to == StateIdle {
		p.handOff(sl, p.tickClock(now))
	}
	p.poke()
}
