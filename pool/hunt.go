package pool

import (
	"math/rand/v2"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// This file holds the hunt for a primary: what the pool does between
// losing its primary and learning which backend is the primary now.
//
// The primary is lost when one of its connections fails or goes
// unanswered (the backend falls under suspicion), a connection attempt to
// it fails, it leaves the backend set, or its server says it is not the
// primary any more (a health check, or [Pool.SetRole] after a write met a
// read-only server). The pool then asks every backend its role at once,
// and again every PrimaryProbeInterval or so, until a backend that answers
// after the hunt began says it is the primary. A round asks each backend
// once, on one connection: an idle one if there is one, else the next one
// a claim gives back; a connection attempt asks anyway. Meanwhile claims
// that only a primary can serve wait in the queue, as every claim does
// while no backend it accepts has an idle connection: the lost primary's
// idle connections are checked before they are handed out again, and a
// backend that is not the primary is never handed to them.
//
// The hunt needs a [RoleReporter]: without one the pool knows roles only
// from the resolver, whose updates are the failover.

// lostPrimary starts a hunt, unless one is under way or the pool cannot
// ask roles. It may be called under any lock.
func (p *Pool[C]) lostPrimary() {
	if p.role == nil || p.policy().PrimaryProbeInterval < 0 || p.hunting.Load() {
		return
	}
	p.huntSince.Store(p.clock.Load())
	if p.hunting.CompareAndSwap(false, true) {
		p.huntFound.Store(false)
		p.poke()
	}
}

// isPrimary reports whether the backend is the primary, as the resolver
// or its server says.
func (s *set[C]) isPrimary() bool { return s.backendValue().Role == resolver.RolePrimary }

// heardRoleLocked records that sl's server just answered the role query,
// in a connection attempt or health check that began when sl became busy:
// the backend needs no other role probe this round, and, if it is the
// primary and the question was asked after the hunt began, the hunt is
// over.
func (s *set[C]) heardRoleLocked(sl *slot[C]) {
	s.probeRole.Store(false)
	s.roleAt.Store(sl.busySince)
	p := s.p
	if p.hunting.Load() && sl.busySince >= p.huntSince.Load() && s.isPrimary() {
		p.huntFound.Store(true)
		p.poke()
	}
}

// probeRoleLocked starts the role probe that s waits for, on an idle
// slot, if it has one; else the next slot a claim gives back will do.
func (s *set[C]) probeRoleLocked(jobs *[]job[C], a *after[C]) {
	if !s.probeRole.Load() || s.getHealth() == HealthRemoved {
		return
	}
	sl := s.idle.pop()
	if sl == nil {
		return
	}
	if sl.unwanted.Load() {
		s.closeSlotLocked(sl, StateIdle, a)
		return
	}
	s.probeRole.Store(false)
	*jobs = append(*jobs, s.startCheckLocked(sl, a))
}

// huntTick runs the hunt on the control loop: it announces a hunt that
// began, ends one that found a primary, and starts a round of role
// probes when one is due. It returns when the next round is due (zero:
// no hunt).
func (p *Pool[C]) huntTick(now time.Time) time.Time {
	if !p.hunting.Load() {
		return time.Time{}
	}
	h := &p.hunt
	if !h.announced {
		h.announced, h.began, h.next = true, now, 0
		p.emit(Event{Kind: EventPrimaryLost})
	}
	if p.huntFound.Load() {
		h.announced = false
		p.hunting.Store(false)
		p.mu.Lock()
		sets := p.setList()
		p.mu.Unlock()
		since := p.huntSince.Load()
		for _, s := range sets {
			s.probeRole.Store(false)
			if resolver.Role(s.learned.Load()) == resolver.RolePrimary && s.roleAt.Load() < since {
				// The lost primary, silent since: it is no longer known
				// to be the primary, so its failures start no hunt. A
				// connection to it asks its role again before use.
				s.learned.Store(uint32(resolver.RoleUnknown))
				s.roleGen.Add(1)
				p.pickerDirty.Store(true)
			}
		}
		p.emit(Event{Kind: EventPrimaryFound, Duration: now.Sub(h.began)})
		return time.Time{}
	}
	mnow := p.mono(now)
	if mnow >= h.next {
		p.mu.Lock()
		for _, s := range p.sets {
			s.probeRole.Store(true)
		}
		p.mu.Unlock()
		// The next round in the upper half of the interval, at random,
		// so that pools that lost the same primary do not ask together.
		iv := int64(p.policy().PrimaryProbeInterval)
		if iv < 0 { // turned off by SetPolicy during the hunt
			iv = int64(DefaultPrimaryProbe)
		}
		h.next = mnow + iv/2 + rand.Int64N(iv/2+1)
	}
	return p.at(h.next)
}

// huntState is the control loop's own record of a hunt.
type huntState struct {
	announced bool      // EventPrimaryLost was emitted
	began     time.Time // when the loop first saw it
	next      int64     // the next round, on the pool's clock
}
