package pool

import (
	"context"
	"time"
)

// rebalanceSlots recomputes how many slots each backend should have (see
// plan) and opens or closes slots to match.
//
// Slots open at once. Surplus idle slots close only on the periodic
// rebalance, or when their room is needed elsewhere, so that the pool
// shrinks slowly after a burst. Claimed slots are never taken away: a
// surplus claimed slot closes when it comes back.
func (p *Pool[C]) rebalanceSlots(ctx context.Context, now time.Time, periodic bool) {
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	sortSets(sets)
	infos := make([]setInfo, len(sets))
	for i, s := range sets {
		infos[i] = s.info()
	}
	pl := plan(infos, p.pol, int(p.waiting.Load()), int(p.closingN.Load()), periodic)

	a := p.newAfter()
	room := pl.room
	for i, s := range sets {
		in := infos[i]
		excess := in.live - pl.wanted[i]
		if excess > 0 && (pl.shrink || in.health == HealthOffline || in.health == HealthRemoved) {
			s.mu.Lock()
			room += s.shrinkLocked(excess, &a)
			s.mu.Unlock()
		}
	}
	var jobs []job[C]
	for i, s := range sets {
		in := infos[i]
		add := min(pl.wanted[i]-in.live, room, p.pol.MaxPerBackend-in.existing)
		if add <= 0 {
			continue
		}
		room -= add
		s.mu.Lock()
		for range add {
			if s.getHealth() == HealthRemoved {
				break
			}
			sl := s.newSlotLocked(&a)
			if sl == nil {
				break // cannot happen: a set has at most MaxPerBackend slots
			}
			jobs = append(jobs, job[C]{sl: sl, kind: StateConnecting})
		}
		s.mu.Unlock()
	}
	for i, s := range sets {
		s.mu.Lock()
		s.setWantedLocked(pl.wanted[i])
		s.mu.Unlock()
	}
	a.event(Event{Kind: EventRebalance, Slots: pl.total})
	p.finish(&a)
	for _, j := range jobs {
		p.start(ctx, j)
	}
}

// setInfo is what plan needs to know of one backend.
type setInfo struct {
	health Health
	prio   uint16
	weight uint64
	tie    uint64 // the set's tie rank (see set.tie)
	// existing counts its slots, which all take room under the caps until
	// they close; live those not unwanted; claimed those claimed.
	existing, live, claimed int
}

// info returns what plan needs to know of s.
func (s *set[C]) info() setInfo {
	b := s.backendValue()
	in := setInfo{prio: b.Priority, weight: weightOf(b), tie: s.tie}
	s.mu.Lock()
	in.health = s.getHealth()
	for _, sl := range s.slots {
		in.existing++
		if !sl.unwanted.Load() {
			in.live++
		}
		if sl.getState() == StateClaimed {
			in.claimed++
		}
	}
	s.mu.Unlock()
	return in
}

// slotPlan is what a rebalance decided.
type slotPlan struct {
	wanted []int // slots wanted per backend, in the order of the infos
	total  int   // the sum of wanted
	// room is how many slots may open: MaxSlots less the slots there are
	// and the connections still closing.
	room int
	// shrink: close the surplus slots of every backend, not only those of
	// offline and removed ones.
	shrink bool
}

// plan decides how many slots each backend should have, given how many
// claims wait and how many connections are still closing.
//
// The pool wants as many slots as there are claims outstanding and
// waiting, plus Spares, never more than MaxSlots in all. An offline
// backend keeps exactly one slot, which probes it. The rest go to the
// backends of the lowest priority tier that is not offline: one each
// first, then in proportion to weight (equal weights: within one of even),
// at most MaxPerBackend each. Backends in higher tiers get none. Surplus
// slots of healthy backends close on the periodic rebalance, or when the
// slots missing elsewhere need more room than there is.
func plan(infos []setInfo, pol Policy, waiting, closing int, periodic bool) slotPlan {
	demand := waiting + pol.Spares
	existing := 0
	activePrio, haveActive := uint16(0), false
	for _, in := range infos {
		demand += in.claimed
		existing += in.existing
		if in.health == HealthUnknown || in.health == HealthOnline {
			if !haveActive || in.prio < activePrio {
				activePrio, haveActive = in.prio, true
			}
		}
	}

	wanted := make([]int, len(infos))
	budget := pol.MaxSlots
	var active []int
	for i, in := range infos {
		switch {
		case in.health == HealthOffline:
			if budget > 0 {
				wanted[i] = 1
				budget--
			}
		case in.health == HealthRemoved:
		case haveActive && in.prio == activePrio:
			active = append(active, i)
		}
	}
	total := min(demand, budget)
	if total < len(active) {
		total = min(len(active), budget)
	}
	weights, ties := make([]uint64, len(active)), make([]uint64, len(active))
	for j, i := range active {
		weights[j], ties[j] = infos[i].weight, infos[i].tie
	}
	for j, n := range distribute(total, weights, ties, pol.MaxPerBackend) {
		wanted[active[j]] = n
	}

	pl := slotPlan{wanted: wanted, room: pol.MaxSlots - existing - closing}
	deficit := 0
	for i, in := range infos {
		deficit += max(0, wanted[i]-in.live)
		pl.total += wanted[i]
	}
	pl.shrink = periodic || deficit > pl.room
	return pl
}

// shrinkLocked closes up to excess of s's slots, cheapest first: slots
// without a connection, then idle ones, then ones busy with I/O, then
// claimed ones. Those busy or claimed are only marked unwanted and close
// when their I/O or claim ends. It returns how many slots it closed that
// held no connection, whose room is free at once.
func (s *set[C]) shrinkLocked(excess int, a *after[C]) (freed int) {
	idle := s.drainIdleLocked()
	isIdle := make(map[*slot[C]]bool, len(idle))
	for _, sl := range idle {
		isIdle[sl] = true
	}
	// Idle slots close from the bottom of the stack up: those claimed
	// least recently first, so that sequential claims keep their
	// connection.
	order := make([]*slot[C], 0, len(s.slots))
	for _, sl := range s.slots {
		if !isIdle[sl] {
			order = append(order, sl)
		}
	}
	for i := len(idle) - 1; i >= 0; i-- {
		order = append(order, idle[i])
	}
	for _, pass := range [...]func(*slot[C]) bool{
		func(sl *slot[C]) bool { return sl.getState() == StateBackingOff && !sl.busy },
		func(sl *slot[C]) bool { return sl.getState() == StateConnecting },
		func(sl *slot[C]) bool { return isIdle[sl] },
		func(sl *slot[C]) bool { return sl.getState() != StateClaimed && !isIdle[sl] },
		func(sl *slot[C]) bool { return sl.getState() == StateClaimed },
	} {
		for _, sl := range order {
			if excess == 0 {
				break
			}
			if sl.unwanted.Load() || !pass(sl) {
				continue
			}
			sl.unwanted.Store(true)
			excess--
			switch from := sl.getState(); {
			case isIdle[sl]:
				delete(isIdle, sl)
				s.closeSlotLocked(sl, from, a)
			case from == StateBackingOff && !sl.busy:
				if !sl.hasConn {
					freed++
				}
				s.closeSlotLocked(sl, from, a)
			}
		}
	}
	kept := idle[:0]
	for _, sl := range idle {
		if isIdle[sl] {
			kept = append(kept, sl)
		}
	}
	s.restoreIdle(kept)
	return freed
}

// distribute splits total slots over backends with the given weights: one
// each first (while there are enough), then each next slot to the backend
// that has the fewest for its weight, none beyond limit. With equal weights
// the shares differ by at most one.
//
// A tie goes to the backend with the lowest rank in ties (nil: the first
// one). Each pool ranks its backends at random (see set.tie), so the
// slots left over once every backend has its even share fall on
// different backends in different pools, and a fleet of pools holds as
// many connections to each backend.
func distribute(total int, weights, ties []uint64, limit int) []int {
	shares := make([]int, len(weights))
	if len(weights) == 0 || total <= 0 || limit <= 0 {
		return shares
	}
	if total >= len(weights) {
		for i := range shares {
			shares[i] = 1
		}
		total -= len(weights)
	}
	rank := func(i int) uint64 {
		if ties == nil {
			return uint64(i)
		}
		return ties[i]
	}
	for ; total > 0; total-- {
		best := -1
		for i, w := range weights {
			if shares[i] >= limit {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			// Compare (shares[i]+1)/w with (shares[best]+1)/weights[best].
			l, r := uint64(shares[i]+1)*weights[best], uint64(shares[best]+1)*w
			if l < r || (l == r && rank(i) < rank(best)) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		shares[best]++
	}
	return shares
}
