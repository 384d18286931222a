package pool

import (
	"context"
	"errors"
	"slices"
	"time"
)

// This file holds stall detection: what the pool does when a backend
// stops answering while operations are out on it.
//
// A claim says nothing of its backend while it is out: a query may run
// for minutes on a healthy server. So the pool asks the backend itself.
// Once a claim has been out for SuspectAfter and nothing from the backend
// has answered for as long (no connection attempt, health check or
// recycle succeeded, and no claim came back), the pool probes it: it
// health-checks an idle connection, or, when none is idle, opens a probe
// connection of its own, which it closes at once. The probe connection
// takes room under MaxSlots, which is never exceeded for it: an idle
// connection elsewhere, or a slot backing off, is closed to make room, or
// else the next claimed connection to come back is. (So when every
// connection of the pool is claimed and none comes back, there is no
// probe, and the operations end by their own deadlines.) If the
// probe, or any connection attempt, check or recycle begun since the
// backend last answered, goes StallTimeout without an answer while claims
// are out, the backend is stalled: it is declared offline and suspected,
// and the connections claimed on it are aborted ([Aborter]), so that the
// operations on them fail now rather than at their deadline. A backend
// that answers its probe is busy, not stalled, and nothing of it is cut.

// Aborter is an optional interface for a [Connector]: Abort cuts conn's
// I/O at once (closing its socket, say), so that whatever its claimer is
// doing with it fails instead of waiting for a backend that stopped
// answering. It is called from a goroutine of the pool while conn is
// claimed, so it must be safe to call concurrently with the claimer's
// use of conn, and must not block. The claimer then finds the connection
// broken and discards it.
type Aborter[C any] interface {
	Abort(conn C)
}

// errStalled is why a backend that stopped answering while claims were
// out on it was declared offline.
var errStalled = errors.New("pool: backend stalled: it stopped answering with operations in flight")

// answeredLocked returns when the backend last answered: a connection
// attempt, check, recycle or probe succeeded, or a claim came back
// without an error, on the pool's clock.
func (s *set[C]) answeredLocked() int64 {
	return max(s.answeredAt, s.doneAt.Load())
}

// watchStallLocked looks for a stall of s's backend while claims are out
// on it (see the top of this file): it starts a probe when one is due,
// and aborts the claims when the backend has stalled. It returns when it
// next needs to look (zero: not while nothing changes), and whether the
// backend's health changed.
func (s *set[C]) watchStallLocked(mnow int64, jobs *[]job[C], a *after[C]) (next int64, healthChanged bool) {
	p := s.p
	suspectAfter, stallAfter := int64(p.policy().SuspectAfter), int64(p.policy().StallTimeout)
	if suspectAfter < 0 || stallAfter < 0 || s.inUse.Load() == 0 {
		s.unreserveProbeLocked()
		return 0, false
	}
	answered := s.answeredLocked()
	pending, stalled := false, false
	wake := func(at int64) {
		if next == 0 || at < next {
			next = at
		}
	}
	// consider a connection attempt, check, recycle or probe begun at
	// since.
	consider := func(since int64) {
		if since < answered {
			return // the backend has answered since
		}
		pending = true
		if at := since + stallAfter; mnow >= at {
			stalled = true
		} else {
			wake(at)
		}
	}
	var oldest int64 = -1
	claimed := 0
	for _, sl := range s.slots {
		switch {
		case sl.busy:
			consider(sl.busySince)
		case sl.getState() == StateClaimed:
			claimed++
			if at := sl.claimedAt.Load(); oldest < 0 || at < oldest {
				oldest = at
			}
		}
	}
	if s.probeSince != 0 {
		consider(s.probeSince)
	}
	switch {
	case claimed == 0:
		s.unreserveProbeLocked()
		return next, false
	case stalled:
		s.unreserveProbeLocked()
		return 0, s.stallLocked(a)
	case pending:
		s.unreserveProbeLocked()
		return next, false
	}
	if due := max(oldest, answered, s.probedAt) + suspectAfter; mnow < due {
		s.unreserveProbeLocked()
		wake(due)
		return next, false
	}
	s.startProbeLocked(mnow, jobs, a)
	wake(mnow + stallAfter)
	return next, false
}

// stallLocked declares s's backend stalled: offline and suspected, with
// the connections claimed on it aborted. It reports whether its health
// changed.
func (s *set[C]) stallLocked(a *after[C]) (healthChanged bool) {
	aborted := 0
	for _, sl := range s.slots {
		if g := sl.claim.Load(); g != 0 && g != sl.abortedClaim {
			sl.abortedClaim = g
			a.aborts = append(a.aborts, sl.conn)
			aborted++
		}
	}
	if !s.suspect.Load() {
		s.suspectLocked(a)
	}
	if s.getHealth() != HealthOffline && s.setHealthLocked(HealthOffline, s.p.clock.Load()) {
		healthChanged = true
		s.noteErrLocked(errStalled, s.p.at(s.p.clock.Load()))
		a.event(Event{Kind: EventBackendOffline, Backend: s.key, Err: errStalled})
	}
	if aborted > 0 {
		a.event(Event{Kind: EventBackendStalled, Backend: s.key, Slots: aborted, Err: errStalled})
	}
	return healthChanged
}

// startProbeLocked probes s's backend: it health-checks an idle
// connection, if there is one, or opens a probe connection.
func (s *set[C]) startProbeLocked(mnow int64, jobs *[]job[C], a *after[C]) {
	if sl := s.idle.pop(); sl != nil {
		s.probedAt = mnow
		if sl.unwanted.Load() {
			s.closeSlotLocked(sl, StateIdle, a)
		} else {
			*jobs = append(*jobs, s.startCheckLocked(sl, a))
			return
		}
	}
	if !s.probeReserved {
		// Take the probe's room now, before it is there: rebalances
		// count it as taken and do not grow into room freed for it.
		s.p.probing.Add(1)
		s.p.probeWaiting.Add(1)
		s.probeReserved = true
	}
	if !s.probeRoomLocked() {
		// MaxSlots leaves no room for a probe connection: make some (see
		// makeRoom), and probe once it is free.
		s.p.needRoom.Store(true)
		return
	}
	// The probe holds the room until it ends.
	s.probeReserved = false
	s.p.probeWaiting.Add(-1)
	s.probedAt, s.probeSince = mnow, mnow
	*jobs = append(*jobs, job[C]{set: s, probe: true})
}

// unreserveProbeLocked gives back the room reserved for a probe of s
// that is no longer wanted.
func (s *set[C]) unreserveProbeLocked() {
	if s.probeReserved {
		s.probeReserved = false
		s.p.probing.Add(-1)
		s.p.probeWaiting.Add(-1)
		s.p.wantRebalance() // for a connection closed to make the room
	}
}

// probeRoomLocked reports whether a probe connection to s fits under
// MaxSlots, connections opening and closing included. It may take s one
// over MaxPerBackend, when every connection s may have is claimed: that
// backend is the one whose server is in doubt.
func (s *set[C]) probeRoomLocked() bool {
	p := s.p
	return p.slotCount.Load()+p.closingN.Load()+p.probing.Load() <= int64(p.policy().MaxSlots)
}

// makeRoom closes the least lately claimed idle connection of the
// backend with the most idle ones, or else a slot backing off, so that a
// probe connection fits under MaxSlots. When there is neither, it asks
// for the next claimed connection to come back to be closed instead
// (roomWanted).
func (p *Pool[C]) makeRoom() {
	if !p.closeIdleForRoom() && !p.closeBackingOffForRoom() {
		p.roomWanted.Store(true)
	}
}

// closeBackingOffForRoom closes a slot backing off, if any, and reports
// whether it did.
func (p *Pool[C]) closeBackingOffForRoom() bool {
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	for _, s := range sets {
		a := p.newAfter()
		s.mu.Lock()
		var victim *slot[C]
		for _, sl := range s.slots {
			if sl.getState() == StateBackingOff && !sl.busy && !sl.unwanted.Load() {
				victim = sl
				break
			}
		}
		if victim != nil {
			s.heldRetryAt = max(s.heldRetryAt, victim.retryAt)
			s.heldAttempts = max(s.heldAttempts, victim.attempts)
			victim.unwanted.Store(true)
			s.closeSlotLocked(victim, StateBackingOff, &a)
		}
		s.mu.Unlock()
		p.finish(&a)
		if victim != nil {
			p.poke()
			return true
		}
	}
	return false
}

// closeIdleForRoom closes the least lately claimed idle connection of
// the backend with the most idle ones, and reports whether it did.
func (p *Pool[C]) closeIdleForRoom() bool {
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	var best *set[C]
	bestIdle := 0
	for _, s := range sets {
		s.mu.Lock()
		n := countByState(s.slots)[StateIdle]
		s.mu.Unlock()
		if n > bestIdle {
			best, bestIdle = s, n
		}
	}
	if best == nil {
		return false
	}
	a := p.newAfter()
	best.mu.Lock()
	idle := best.drainIdleLocked()
	var victim *slot[C]
	for _, sl := range idle {
		if victim == nil || sl.claimedAt.Load() < victim.claimedAt.Load() {
			victim = sl
		}
	}
	kept := slices.DeleteFunc(idle, func(sl *slot[C]) bool { return sl == victim })
	if victim != nil {
		victim.unwanted.Store(true)
		best.closeSlotLocked(victim, StateIdle, &a)
	}
	best.restoreIdle(kept)
	best.mu.Unlock()
	p.finish(&a)
	return victim != nil
}

// probe opens a connection to s's backend, checks it and closes it: the
// probe of a backend with claims out and no idle connection.
func (p *Pool[C]) probe(ctx context.Context, s *set[C]) {
	cctx, cancel := context.WithTimeout(ctx, p.policy().ConnectTimeout)
	conn, err := p.conn.Connect(cctx, s.backendValue())
	if err == nil {
		err = p.conn.IsValid(cctx, conn)
		p.conn.Close(conn)
	}
	p.probing.Add(-1)
	cancel()
	now := time.Now()
	p.tickClock(now)
	a := p.newAfter()
	s.mu.Lock()
	s.probeSince = 0
	if err == nil {
		s.answeredAt = p.mono(now)
		if s.getHealth() == HealthOffline && s.setHealthLocked(HealthOnline, p.mono(now)) {
			// Stalled with every slot claimed, it answers again: no
			// connection attempt of its own would have told.
			a.event(Event{Kind: EventBackendOnline, Backend: s.key})
		}
	} else {
		s.noteErrLocked(err, now)
	}
	s.mu.Unlock()
	p.finish(&a)
	// The room is free again, and the backend's health may have changed:
	// the rebalance reopens what was closed to make the room.
	p.wantRebalance()
	p.poke()
}
