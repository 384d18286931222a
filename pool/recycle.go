package pool

import "time"

// This file holds Pool.Recycle: the replacement, at a paced rate, of the
// connections open at the time of the call, as when the credentials
// their logins used have changed.

// Recycle marks every connection open now, or being opened, to be
// replaced with a new one; it returns how many slots held or were opening
// one. The pool keeps
// using them meanwhile: an idle one is replaced in the background, a
// claimed one once it is released, each backend at the connect-rate
// limit (Policy.ConnectRate times the backend's share of MaxSlots, with
// ConnectBurst at once), so that the whole pool turns over in about
// 1/ConnectRate seconds and never loses more than ConnectBurst
// connections of a backend at once. With the limit off, each is replaced
// as soon as it is idle or released. While a backend's last connection
// attempt failed (new credentials refused, say), its marked connections
// are kept in service and their replacement waits for an attempt to
// succeed, so a bad rotation costs a connection per backend, not the
// pool. Stats.Backends[i].Outdated counts those not replaced yet.
func (p *Pool[C]) Recycle() int {
	p.recycleGen.Add(1)
	n := 0
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	for _, s := range sets {
		s.mu.Lock()
		for _, sl := range s.slots {
			if sl.hasConn || sl.getState() == StateConnecting {
				n++
			}
		}
		s.mu.Unlock()
	}
	p.poke()
	return n
}

// staleSlot reports whether sl's connection was opened, or began to be,
// before the last call of Recycle.
func (p *Pool[C]) staleSlot(sl *slot[C]) bool {
	return sl.connGen.Load() < p.recycleGen.Load()
}

// recycleTurnLocked reports whether a stale connection of s may be
// replaced at mnow, taking its turn; if not, it returns when one may.
func (s *set[C]) recycleTurnLocked(mnow int64) (ok bool, next int64) {
	if s.p.policy().ConnectRate <= 0 {
		return true, 0
	}
	return s.recycleBucket.take(mnow, s.connectRate(), s.p.policy().ConnectBurst, 1)
}

// staleDueLocked reports whether sl holds a connection Recycle marked
// that replaceStaleLocked would replace at mnow, without taking its turn;
// if it is marked but not due, it returns when it will be (zero: when a
// connection attempt succeeds).
func (s *set[C]) staleDueLocked(sl *slot[C], mnow int64) (due bool, at int64) {
	if !s.p.staleSlot(sl) || s.failStreak > 0 {
		return false, 0
	}
	if s.p.policy().ConnectRate <= 0 {
		return true, 0
	}
	return s.recycleBucket.ready(mnow, s.connectRate(), s.p.policy().ConnectBurst)
}

// replaceStaleLocked reports whether sl, which the caller owns, holds a
// connection Recycle marked and may be replaced at mnow, taking its turn.
// When its turn has not come, it moves *next, unless next is nil, to
// when it comes.
func (s *set[C]) replaceStaleLocked(sl *slot[C], mnow int64, next *time.Time) bool {
	if !s.p.staleSlot(sl) || s.failStreak > 0 {
		// Not marked, or a replacement would likely fail as the last
		// attempt did: keep it in service.
		return false
	}
	ok, turn := s.recycleTurnLocked(mnow)
	if !ok && next != nil {
		*next = earliest(*next, s.p.at(turn))
	}
	return ok
}
