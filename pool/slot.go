package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// This file holds the slot and every transition between the states drawn
// in state.go.
//
// A transition is a method named …Locked (or, without a lock, pushIdle
// and claimSlot on the claim path). It runs with set.mu held, by the
// slot's owner, and records in an [after] what is left to do once the
// lock is released: the connections to close and the events to report.
// The caller then unlocks and calls p.finish, which does both.
//
// closeSlotLocked is the one transition that takes a slot's connection
// away to be closed, and the only place that counts it in closingN;
// closeConns, which closes it, is the only place that uncounts it.
// startConnectLocked also takes a connection away, the old one of a slot
// that reconnects: it is not counted, because the slot's own room under
// the caps covers it until the connection attempt has closed it.

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
	// trace is where the current claim was made, with leak detection on
	// (see leak.go); it may be a past claim's, whose gen tells.
	trace atomic.Pointer[claimTrace]
	// claimedAt is when the current claim began, on the pool's clock, read
	// exactly (see claimSlot).
	claimedAt atomic.Int64
	// unwanted: close the slot instead of reusing it. Set under set.mu,
	// read by whoever owns the slot.
	unwanted atomic.Bool
	// connGen is Pool.recycleGen as it was when the connection attempt
	// of its connection began (see recycle.go).
	connGen atomic.Uint64

	// Owner's fields.
	conn C
	// gen counts claims; the current claim's handle carries it.
	gen       uint64
	idleSince int64 // on the pool's clock
	// lastClaim is the set's served count when the slot was last
	// claimed: the higher, the more recently it was in use (zero: never).
	lastClaim uint64

	// The fields below are guarded by set.mu.
	// busy: a goroutine of the pool is connecting, checking or
	// recycling the slot and owns it until it takes set.mu again.
	busy bool
	// busySince is when the slot last became busy, on the pool's coarse
	// clock (see watchLateLocked).
	busySince int64
	// hasConn: conn holds an open connection. It does from a successful
	// connection attempt until the slot closes or reconnects, so a slot
	// backing off after a failed check or a discard still holds its old
	// connection, which its next connection attempt closes first.
	hasConn bool
	// recheck: health-check the connection before it is handed out again.
	recheck bool
	// abortedClaim is the claim whose connection a stall aborted.
	abortedClaim uint64
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

// after is what transitions made under set.mu leave to do once it is
// released. The zero after records no events.
type after[C any] struct {
	// observing: record events.
	observing bool
	// inline: close the connections on the calling goroutine, which may
	// do I/O (a goroutine of the pool, or Close), instead of handing them
	// to the control loop.
	inline bool
	events []Event     // nil unless observing
	closes []doomed[C] // connections to close, each counted in closingN
	aborts []C         // claimed connections to abort (see Aborter)
}

// doomed is a connection taken from its slot to be closed, with its set,
// which counts it in closing until it is.
type doomed[C any] struct {
	conn C
	set  *set[C]
}

// newAfter returns an after that records events if anyone observes them.
func (p *Pool[C]) newAfter() after[C] { return after[C]{observing: p.observing()} }

// event records e, if events are observed.
func (a *after[C]) event(e Event) {
	if a.observing {
		a.events = append(a.events, e)
	}
}

// moved records that sl went from one state to another.
func (a *after[C]) moved(sl *slot[C], from, to State) {
	a.event(Event{Kind: EventSlotState, Backend: sl.set.key, Slot: sl.id, From: from, To: to})
}

// finish does what transitions left to do: it closes their connections and
// reports their events. It must not be called with p.mu or a set's mu
// held.
func (p *Pool[C]) finish(a *after[C]) {
	if p.abort != nil {
		for _, c := range a.aborts {
			p.abort.Abort(c)
		}
	}
	if len(a.closes) > 0 {
		if a.inline {
			p.closeConns(a.closes)
		} else {
			p.queueCloses(a.closes)
		}
	}
	for _, e := range a.events {
		p.emit(e)
	}
}

// queueCloses hands conns to the control loop, which closes them on a
// goroutine of its own, or closes them at once when the loop has stopped.
func (p *Pool[C]) queueCloses(conns []doomed[C]) {
	p.mu.Lock()
	if !p.loopDone {
		p.closeQ = append(p.closeQ, conns...)
		p.mu.Unlock()
		p.poke()
		return
	}
	p.mu.Unlock()
	p.closeConns(conns)
}

// closeConns closes conns, taken from their slots by closeSlotLocked,
// concurrently when there are several, and frees their room under
// MaxSlots once they are closed.
func (p *Pool[C]) closeConns(conns []doomed[C]) {
	if len(conns) == 1 {
		p.conn.Close(conns[0].conn)
	} else {
		var wg sync.WaitGroup
		for _, d := range conns {
			wg.Go(func() { p.conn.Close(d.conn) })
		}
		wg.Wait()
	}
	for _, d := range conns {
		d.set.closing.Add(-1)
	}
	p.closingN.Add(-int64(len(conns)))
	p.changed()
	if p.probeWaiting.Load() > 0 {
		p.poke() // a probe may fit now
	}
	if p.closing.Load() {
		// Shutdown may be waiting for the last connections to close.
		select {
		case p.returned <- struct{}{}:
		default:
		}
	}
}

// job is background work a transition started: a connection attempt, a
// health check or a recycle, to run once set.mu is released (see
// Pool.start), or a probe connection (see stall.go).
type job[C any] struct {
	sl   *slot[C]
	kind State // StateConnecting, StateChecking or StateRecycling
	// old is a connection to close before connecting, if hasOld.
	old    C
	hasOld bool
	// probe: a probe connection to set's backend, with no slot.
	probe bool
	set   *set[C]
}

// start runs j on a goroutine of the pool.
func (p *Pool[C]) start(ctx context.Context, j job[C]) {
	if j.probe {
		p.spawn(ctx, func(ctx context.Context) { p.probe(ctx, j.set) })
		return
	}
	sl := j.sl
	switch j.kind {
	case StateConnecting:
		p.spawn(ctx, func(ctx context.Context) {
			if j.hasOld {
				p.conn.Close(j.old)
			}
			p.connect(ctx, sl)
		})
	case StateChecking:
		p.spawn(ctx, func(ctx context.Context) { p.check(ctx, sl) })
	case StateRecycling:
		p.spawn(ctx, func(ctx context.Context) { p.recycle(ctx, sl) })
	}
}

// goneLocked reports whether sl, which the caller owns, must close rather
// than be used again: it is unwanted, its backend was removed, or the pool
// is closing.
func (s *set[C]) goneLocked(sl *slot[C]) bool {
	return sl.unwanted.Load() || s.getHealth() == HealthRemoved || s.p.closing.Load()
}

// newSlotLocked adds a slot at mnow, or returns nil if the set is full,
// which the caps rule out. The slot starts connecting at once (closed →
// connecting, busy; the caller starts its job), unless the connect-rate
// limit holds it back (closed → backing off, until its turn comes).
func (s *set[C]) newSlotLocked(mnow int64, a *after[C]) (sl *slot[C], connect bool) {
	sl = &slot[C]{id: s.p.slotIDs.Add(1), set: s}
	if !s.idle.place(sl) {
		return nil, false
	}
	s.slots = append(s.slots, sl)
	s.p.slotCount.Add(1)
	if at := s.heldRetryAt; at != 0 {
		// It takes the place of a slot closed while it backed off, and
		// its backoff.
		sl.attempts, s.heldRetryAt, s.heldAttempts = s.heldAttempts, 0, 0
		if at > mnow {
			sl.setState(StateBackingOff)
			sl.retryAt = at
			a.moved(sl, StateClosed, StateBackingOff)
			return sl, false
		}
	}
	ok, next := s.mayConnectLocked(mnow)
	if !ok {
		sl.setState(StateBackingOff)
		sl.retryAt = next
		a.moved(sl, StateClosed, StateBackingOff)
		return sl, false
	}
	sl.setState(StateConnecting)
	s.busyLocked(sl)
	a.moved(sl, StateClosed, StateConnecting)
	return sl, true
}

// closeSlotLocked closes sl, which the caller owns and which is in state
// from: the slot is forgotten at once, and its connection, if it holds
// one, goes to a.closes. The connection counts in closingN until it is
// closed, since it still takes room under MaxSlots.
func (s *set[C]) closeSlotLocked(sl *slot[C], from State, a *after[C]) {
	if sl.hasConn {
		a.closes = append(a.closes, doomed[C]{sl.conn, s})
		var zero C
		sl.conn, sl.hasConn = zero, false
		s.closing.Add(1)
		s.p.closingN.Add(1)
	}
	s.removeSlotLocked(sl)
	a.moved(sl, from, StateClosed)
}

// removeSlotLocked forgets sl, whose connection, if any, is someone
// else's to close: closeSlotLocked's, or the owner's when Close takes the
// slot from under it.
func (s *set[C]) removeSlotLocked(sl *slot[C]) {
	sl.setState(StateClosed)
	s.idle.forget(sl)
	for i, x := range s.slots {
		if x == sl {
			copy(s.slots[i:], s.slots[i+1:])
			s.slots[len(s.slots)-1] = nil
			s.slots = s.slots[:len(s.slots)-1]
			s.p.slotCount.Add(-1)
			s.p.changed()
			return
		}
	}
}

// connectedLocked ends a connection attempt of sl, which is connecting:
// the slot becomes idle (the caller hands it on), backs off after a
// failure, or closes if it is gone (see goneLocked). It reports whether
// the backend's health changed.
func (s *set[C]) connectedLocked(sl *slot[C], conn C, role resolver.Role, err error, now time.Time, took time.Duration, a *after[C]) (healthChanged bool) {
	p := s.p
	gone := s.goneLocked(sl)
	if err != nil {
		sl.attempts++
		s.failStreak++
		s.noteErrLocked(err, now)
		// OfflineAfter failures in a row make a backend offline; so does
		// one, under the connect-rate limit, if the backend is suspect: a
		// connection to it broke or failed its check, and the limit would
		// make the next failures take seconds.
		failed := s.failStreak >= p.policy().OfflineAfter || (s.suspect.Load() && p.policy().ConnectRate > 0)
		if h := s.getHealth(); h != HealthOffline && h != HealthRemoved &&
			failed && countByState(s.slots).connected() == 0 {
			healthChanged = s.setHealthLocked(HealthOffline, p.mono(now))
			a.event(Event{Kind: EventBackendOffline, Backend: s.key, Err: err})
		}
		a.event(Event{Kind: EventConnectFailed, Backend: s.key, Slot: sl.id, Err: err, Duration: took})
		if s.isPrimary() {
			p.lostPrimary()
		}
		if gone {
			s.closeSlotLocked(sl, StateConnecting, a)
		} else {
			sl.setState(StateBackingOff)
			sl.retryAt = p.mono(now.Add(p.backoff(sl.attempts, s.getHealth() == HealthOffline)))
			if s.limitedLocked(sl.retryAt) {
				// Attempts that failed together (timed out together, say)
				// must not all retry together, in this pool or the fleet.
				sl.retryAt += s.paceJitter()
			}
			a.moved(sl, StateConnecting, StateBackingOff)
		}
		return healthChanged
	}
	sl.conn, sl.hasConn = conn, true
	if gone {
		s.closeSlotLocked(sl, StateConnecting, a)
		return false
	}
	sl.attempts = 0
	s.failStreak = 0
	s.answeredAt = p.mono(now)
	sl.expiresAt = p.lifetimeFrom(now)
	sl.checkAt = p.nextCheckFrom(now)
	sl.recheck = false
	if p.role != nil {
		s.learnRole(role)
		s.heardRoleLocked(sl)
	}
	s.setSuspect(false)
	if s.setHealthLocked(HealthOnline, p.mono(now)) {
		healthChanged = true
		a.event(Event{Kind: EventBackendOnline, Backend: s.key})
	}
	a.event(Event{Kind: EventConnect, Backend: s.key, Slot: sl.id, Duration: took})
	s.idleLocked(sl, StateConnecting, a)
	return healthChanged
}

// checkedLocked ends a health check of sl, which is checking: the slot
// becomes idle (the caller hands it on), reconnects after a failure, or
// closes if it is gone. role is what the server said, if err is nil and
// the connector reports roles. It reports whether the backend's health
// changed: an offline backend whose connection answers is online again.
func (s *set[C]) checkedLocked(sl *slot[C], role resolver.Role, err error, now time.Time, took time.Duration, a *after[C]) (healthChanged bool) {
	kind := EventHealthCheck
	if err != nil {
		kind = EventHealthCheckFailed
	}
	a.event(Event{Kind: kind, Backend: s.key, Slot: sl.id, Err: err, Duration: took})
	switch {
	case s.goneLocked(sl):
		s.closeSlotLocked(sl, StateChecking, a)
	case err != nil:
		s.failedLocked(sl, StateChecking, err, now, a)
	default:
		if s.p.role != nil {
			s.learnRole(role)
			s.heardRoleLocked(sl)
		}
		s.answeredAt = s.p.mono(now)
		sl.checkAt = s.p.nextCheckFrom(now)
		if sl.recheck {
			// The backend answered after a failure: stop suspecting it.
			s.setSuspect(false)
			sl.recheck = false
		}
		if s.getHealth() == HealthOffline && s.setHealthLocked(HealthOnline, s.p.mono(now)) {
			// Declared offline while checks went unanswered (see
			// watchLateLocked), it answers again.
			healthChanged = true
			a.event(Event{Kind: EventBackendOnline, Backend: s.key})
		}
		s.idleLocked(sl, StateChecking, a)
	}
	return healthChanged
}

// recycledLocked ends a background recycle of sl, which is recycling: the
// slot becomes idle (the caller hands it on), waits for a health check,
// reconnects after a failure, or closes if it is gone.
func (s *set[C]) recycledLocked(sl *slot[C], err error, now time.Time, took time.Duration, a *after[C]) {
	kind := EventRecycle
	if err != nil {
		kind = EventRecycleFailed
	}
	a.event(Event{Kind: kind, Backend: s.key, Slot: sl.id, Err: err, Duration: took})
	if err == nil {
		s.answeredAt = s.p.mono(now)
	}
	switch {
	case s.goneLocked(sl):
		s.closeSlotLocked(sl, StateRecycling, a)
	case err != nil:
		s.failedLocked(sl, StateRecycling, err, now, a)
	case sl.recheck:
		// The backend fell under suspicion while this connection was
		// out: check it before anyone gets it.
		s.awaitCheckLocked(sl, StateRecycling, a)
	default:
		s.idleLocked(sl, StateRecycling, a)
	}
}

// releasedLocked ends the claim on sl when the release's fast path (a
// hand-off, see Claim.end) does not apply: the slot closes if it is gone,
// reconnects after err (suspecting the backend if the claimer found the
// connection broken), when its lifetime is over, or when Recycle marked it
// and its turn has come, or waits for its
// background recycle.
func (s *set[C]) releasedLocked(sl *slot[C], err error, broken bool, now int64, a *after[C]) {
	switch {
	case s.goneLocked(sl):
		s.closeSlotLocked(sl, StateClaimed, a)
	case s.p.roomWanted.Load() && s.p.roomWanted.CompareAndSwap(true, false):
		// A probe waits for room that nothing idle could give (see
		// makeRoom): this connection's. The rebalance that would replace
		// it counts the probe's room as taken.
		if err != nil {
			s.noteErrLocked(err, time.Now())
		}
		s.closeSlotLocked(sl, StateClaimed, a)
		if broken {
			s.suspectLocked(a)
		}
	case err != nil:
		s.noteErrLocked(err, time.Now())
		s.replaceLocked(sl, StateClaimed, a)
		if broken {
			s.suspectLocked(a)
		}
	case sl.expiresAt != 0 && now >= sl.expiresAt:
		s.replaceLocked(sl, StateClaimed, a)
	case s.replaceStaleLocked(sl, now, nil):
		s.replaceLocked(sl, StateClaimed, a)
	case sl.recheck:
		// The backend fell under suspicion while this connection was
		// out: check it before anyone gets it.
		s.awaitCheckLocked(sl, StateClaimed, a)
	case s.probeRole.Load():
		// A hunt for the primary wants the backend's role: ask it on
		// this connection.
		s.probeRole.Store(false)
		s.awaitCheckLocked(sl, StateClaimed, a)
	default:
		sl.setState(StateRecycling) // the control loop starts the recycle
		a.moved(sl, StateClaimed, StateRecycling)
	}
}

// failedLocked records that the health check or recycle of sl, in state
// from, failed: the slot reconnects and the backend falls under suspicion.
func (s *set[C]) failedLocked(sl *slot[C], from State, err error, now time.Time, a *after[C]) {
	s.noteErrLocked(err, now)
	s.replaceLocked(sl, from, a)
	s.suspectLocked(a)
}

// replaceLocked sends sl, which the caller owns, back to connect again at
// once (→ backing off, due now). The slot keeps its connection until its
// next connection attempt closes it, so the slot's room under the caps
// covers both.
func (s *set[C]) replaceLocked(sl *slot[C], from State, a *after[C]) {
	sl.setState(StateBackingOff)
	sl.retryAt = 0
	sl.attempts = 0
	a.moved(sl, from, StateBackingOff)
}

// idleLocked makes sl, which the caller owns, idle but not yet claimable:
// once set.mu is released the caller hands it to a queued claim or pushes
// it on the idle stack (see Pool.handOff). Being idle under the lock, it
// is never taken by the control loop for a slot waiting for work.
func (s *set[C]) idleLocked(sl *slot[C], from State, a *after[C]) {
	sl.setState(StateIdle)
	a.moved(sl, from, StateIdle)
}

// awaitCheckLocked has sl, which the caller owns, wait for a health check
// (→ checking, not busy); the control loop starts it.
func (s *set[C]) awaitCheckLocked(sl *slot[C], from State, a *after[C]) {
	sl.setState(StateChecking)
	sl.recheck = true
	a.moved(sl, from, StateChecking)
}

// suspectLocked marks the backend as suspected of failure: claims prefer
// other backends, and its idle connections are checked before they are
// handed out again, as are those being checked or recycled now.
func (s *set[C]) suspectLocked(a *after[C]) {
	s.setSuspect(true)
	if s.isPrimary() {
		s.p.lostPrimary()
	}
	for _, sl := range s.drainIdleLocked() {
		s.awaitCheckLocked(sl, StateIdle, a)
	}
	for _, sl := range s.slots {
		switch st := sl.getState(); {
		case st == StateRecycling, st == StateChecking && sl.busy, st == StateClaimed:
			// A claimed slot is checked when it comes back, so that a
			// backend whose every connection is out is not suspected
			// for ever.
			sl.recheck = true
		}
	}
}

// setSuspect records whether s is under suspicion. A change marks the
// picker dirty: a backend that was suspected rejoins the round robin
// level with the others (see rebuildPicker).
func (s *set[C]) setSuspect(v bool) {
	if s.suspect.Swap(v) != v {
		s.p.pickerDirty.Store(true)
	}
}

// startConnectLocked starts a connection attempt of sl, which is idle or
// backing off and not busy (→ connecting, busy). The job it returns
// closes the slot's old connection, if it has one, before it dials.
func (s *set[C]) startConnectLocked(sl *slot[C], from State, a *after[C]) job[C] {
	j := job[C]{sl: sl, kind: StateConnecting}
	if sl.hasConn {
		j.old, j.hasOld = sl.conn, true
		var zero C
		sl.conn, sl.hasConn = zero, false
	}
	sl.setState(StateConnecting)
	s.busyLocked(sl)
	a.moved(sl, from, StateConnecting)
	return j
}

// startCheckLocked starts a health check of sl, which is idle and off the
// stack (→ checking, busy).
func (s *set[C]) startCheckLocked(sl *slot[C], a *after[C]) job[C] {
	sl.setState(StateChecking)
	s.busyLocked(sl)
	a.moved(sl, StateIdle, StateChecking)
	return job[C]{sl: sl, kind: StateChecking}
}

// startAwaitedLocked starts the health check or recycle that sl, checking
// or recycling and not busy, waits for (→ busy, same state).
func (s *set[C]) startAwaitedLocked(sl *slot[C]) job[C] {
	s.busyLocked(sl)
	return job[C]{sl: sl, kind: sl.getState()}
}

// busyLocked hands sl to a goroutine of the pool (→ busy), from now on
// the pool's coarse clock, which the control loop keeps to its tick.
func (s *set[C]) busyLocked(sl *slot[C]) {
	sl.busy = true
	sl.busySince = s.p.clock.Load()
}

// watchLateLocked counts against the backend the connection attempts,
// health checks and recycles of its slots that have gone SuspectAfter or
// more while the backend answered nothing else either (see
// Policy.SuspectAfter): one late is enough to
// suspect the backend; OfflineAfter late at once, with none pending for
// less and no connection idle, declare an online backend offline. A
// backend that stops answering is so found out in seconds, not after
// OfflineAfter connection attempts have each run out ConnectTimeout. One
// never yet reached is only suspected: until it answers, ConnectTimeout
// decides. Claimed slots do not count either way: how long a query may
// take is not the pool's to judge. It
// returns when the earliest pending one will be late (zero: none), and
// whether the backend's health changed.
func (s *set[C]) watchLateLocked(mnow int64, a *after[C]) (next int64, healthChanged bool) {
	limit := int64(s.p.policy().SuspectAfter)
	if limit < 0 {
		return 0, false
	}
	late, early, idle := 0, 0, 0
	answered := s.answeredLocked()
	for _, sl := range s.slots {
		switch {
		case sl.busy && sl.busySince < answered:
			// The backend has answered since this began.
		case sl.busy:
			if at := sl.busySince + limit; mnow >= at {
				late++
			} else {
				early++
				if next == 0 || at < next {
					next = at
				}
			}
		case sl.getState() == StateIdle:
			idle++
		}
	}
	if late == 0 {
		return next, false
	}
	if !s.suspect.Load() {
		s.suspectLocked(a)
		idle = 0 // now waiting for checks, which start at once
	}
	if s.getHealth() == HealthOnline && late >= s.p.policy().OfflineAfter && early == 0 && idle == 0 {
		healthChanged = s.setHealthLocked(HealthOffline, mnow)
		s.noteErrLocked(errNoAnswer, s.p.at(mnow))
		a.event(Event{Kind: EventBackendOffline, Backend: s.key, Err: errNoAnswer})
	}
	return next, healthChanged
}

// retireLocked closes what a removed backend no longer uses: every slot
// becomes unwanted, idle slots and slots backing off close now, and the
// others close when their owner is done with them.
func (s *set[C]) retireLocked(a *after[C]) {
	for _, sl := range s.slots {
		sl.unwanted.Store(true)
	}
	for _, sl := range s.drainIdleLocked() {
		s.closeSlotLocked(sl, StateIdle, a)
	}
	for _, sl := range append([]*slot[C](nil), s.slots...) {
		if sl.getState() == StateBackingOff && !sl.busy {
			s.closeSlotLocked(sl, StateBackingOff, a)
		}
	}
}

// closeUnclaimedLocked closes, for Close, every slot that is not claimed
// and whose connection nobody is using. After the pool's goroutines have
// stopped that is all of them but those claimed and those idle off the
// stack, which a claim or release on its way owns: the claim's release
// closes the first kind, and the release the second (see
// set.closeIdleLate).
func (s *set[C]) closeUnclaimedLocked(a *after[C]) {
	for _, sl := range s.drainIdleLocked() {
		s.closeSlotLocked(sl, StateIdle, a)
	}
	for _, sl := range append([]*slot[C](nil), s.slots...) {
		switch st := sl.getState(); st {
		case StateClaimed, StateIdle:
		default:
			s.closeSlotLocked(sl, st, a)
		}
	}
}

// closeIdleLate closes the idle slots of a closing pool, for a release
// that pushed its slot on the idle stack just as Close drained it.
func (s *set[C]) closeIdleLate() {
	a := after[C]{inline: true}
	s.mu.Lock()
	for _, sl := range s.drainIdleLocked() {
		s.closeSlotLocked(sl, StateIdle, &a)
	}
	s.mu.Unlock()
	s.p.finish(&a)
}

// revokeClaimsLocked ends every claim of the set by force and closes the
// claimed slots, for Close when its context has ended.
func (s *set[C]) revokeClaimsLocked(a *after[C]) {
	for _, sl := range append([]*slot[C](nil), s.slots...) {
		if sl.getState() == StateClaimed && sl.claim.Swap(0) != 0 {
			s.inUse.Add(-1)
			s.closeSlotLocked(sl, StateClaimed, a)
		}
	}
}

// pushIdle makes sl, which the caller owns, idle and claimable; the idle
// stack owns it from then on. It needs no lock.
func (s *set[C]) pushIdle(sl *slot[C], now int64) {
	sl.idleSince = now
	sl.setState(StateIdle)
	s.idle.push(sl)
}

// pushIdleInOrder makes sl, which the caller owns and which comes back
// from background work (a new connection, a passed health check, a
// recycle), idle and claimable below the idle slots claimed more recently
// than it: the connection a claim gave back last stays on top, so
// sequential code on one backend keeps its session however the pool's
// background work goes. It needs no lock; a claim meanwhile may miss the
// few slots it lifts off the stack for a moment, and waits for them.
func (s *set[C]) pushIdleInOrder(sl *slot[C], now int64) {
	var above [8]*slot[C]
	n := 0
	for n < len(above) {
		top := s.idle.pop()
		if top == nil {
			break
		}
		if top.lastClaim <= sl.lastClaim {
			s.idle.push(top)
			break
		}
		above[n] = top
		n++
	}
	s.pushIdle(sl, now)
	for i := n - 1; i >= 0; i-- {
		s.idle.push(above[i])
	}
}

// drainIdleLocked takes every slot off the idle stack, the top first; the
// caller owns them and must give those it keeps to restoreIdle.
func (s *set[C]) drainIdleLocked() []*slot[C] {
	var out []*slot[C]
	for sl := s.idle.pop(); sl != nil; sl = s.idle.pop() {
		out = append(out, sl)
	}
	return out
}

// restoreIdle pushes back slots drainIdleLocked took, in the order it
// took them, so that the stack keeps its order.
func (s *set[C]) restoreIdle(kept []*slot[C]) {
	for i := len(kept) - 1; i >= 0; i-- {
		s.idle.push(kept[i])
	}
}

// claimSlot hands sl, which the caller owns, to a new claim. It needs no
// lock. It stamps the claim with the monotonic clock rather than the
// coarse one, which may lag by up to RebalanceInterval in a quiet pool:
// Stats shows the age of the oldest claim, and leak detection times it.
// One read of the monotonic clock (no wall clock) costs the claim a few
// nanoseconds.
func (s *set[C]) claimSlot(sl *slot[C]) Claim[C] {
	sl.gen++
	sl.claimedAt.Store(s.p.clockNow())
	sl.setState(StateIdle) // what it returns to when the claim ends
	sl.claim.Store(sl.gen)
	if n := s.inUse.Add(1); n > s.peak.Load() {
		s.peak.Store(n) // a race may lose a peak of one claim: no matter
	}
	sl.lastClaim = s.served.Add(1)
	return Claim[C]{slot: sl, gen: sl.gen, conn: sl.conn}
}

// slotCounts counts slots by state.
type slotCounts [StateClosed + 1]int

// countByState counts slots by state; set.mu must be held.
func countByState[C any](slots []*slot[C]) slotCounts {
	var n slotCounts
	for _, sl := range slots {
		n[sl.getState()]++
	}
	return n
}

// connected counts the slots that hold a connection.
func (n slotCounts) connected() int {
	return n[StateIdle] + n[StateChecking] + n[StateClaimed] + n[StateRecycling]
}
