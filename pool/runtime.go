package pool

import "time"

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
