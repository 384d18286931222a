package pool

import (
	"context"
	"time"
)

// rebalanceSlots recomputes how many slots each backend should have and
// opens or closes slots to match.
//
// The pool wants as many slots as there are claims outstanding and
// waiting, plus Spares, never more than MaxSlots in all. An offline
// backend keeps exactly one slot, which probes it. The rest go to the
// backends of the lowest priority tier that is not offline: one each
// first, then in proportion to weight (equal weights: within one of even),
// at most MaxPerBackend each. Backends in higher tiers get none.
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

	type info struct {
		s                       *set[C]
		health                  Health
		prio                    uint16
		weight                  uint64
		live, existing, claimed int
	}
	infos := make([]info, len(sets))
	demand := int(p.waiting.Load()) + p.pol.Spares
	existingTotal := 0
	activePrio, haveActive := uint16(0), false
	for i, s := range sets {
		b := s.backendValue()
		in := info{s: s, prio: b.Priority, weight: weightOf(b)}
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
		infos[i] = in
		demand += in.claimed
		existingTotal += in.existing
		if in.health == HealthUnknown || in.health == HealthOnline {
			if !haveActive || in.prio < activePrio {
				activePrio, haveActive = in.prio, true
			}
		}
	}

	wanted := make([]int, len(infos))
	budget := p.pol.MaxSlots
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
	weights := make([]uint64, len(active))
	for j, i := range active {
		weights[j] = infos[i].weight
	}
	for j, n := range distribute(total, weights, p.pol.MaxPerBackend) {
		wanted[active[j]] = n
	}

	deficit, wantedTotal := 0, 0
	for i, in := range infos {
		deficit += max(0, wanted[i]-in.live)
		wantedTotal += wanted[i]
	}
	room := p.pol.MaxSlots - existingTotal - int(p.closingN.Load())
	shrinkAll := periodic || deficit > room

	var events []Event
	observing := p.observing()
	var toClose []C
	for i, in := range infos {
		s := in.s
		excess := in.live - wanted[i]
		if excess <= 0 || !(shrinkAll || in.health == HealthOffline || in.health == HealthRemoved) {
			continue
		}
		s.mu.Lock()
		// Cheapest first: slots without a connection, then idle ones,
		// then ones busy with I/O, then claimed ones.
		idle := s.drainIdleLocked()
		isIdle := make(map[*slot[C]]bool, len(idle))
		for _, sl := range idle {
			isIdle[sl] = true
		}
		for _, pass := range [...]func(*slot[C]) bool{
			func(sl *slot[C]) bool { return sl.getState() == StateBackingOff && !sl.busy },
			func(sl *slot[C]) bool { return sl.getState() == StateConnecting },
			func(sl *slot[C]) bool { return isIdle[sl] },
			func(sl *slot[C]) bool { return sl.getState() != StateClaimed && !isIdle[sl] },
			func(sl *slot[C]) bool { return sl.getState() == StateClaimed },
		} {
			for _, sl := range append([]*slot[C](nil), s.slots...) {
				if excess == 0 {
					break
				}
				if sl.unwanted.Load() || !pass(sl) {
					continue
				}
				sl.unwanted.Store(true)
				excess--
				from := sl.getState()
				switch {
				case isIdle[sl]:
					delete(isIdle, sl)
					toClose = append(toClose, s.detachLocked(sl))
					s.removeSlotLocked(sl)
				case from == StateBackingOff && !sl.busy:
					if sl.stale {
						toClose = append(toClose, s.detachLocked(sl))
					} else {
						room++ // nothing to close: the room is free now
					}
					s.removeSlotLocked(sl)
				default:
					continue // closes when its I/O or claim ends
				}
				if observing {
					events = append(events, Event{Kind: EventSlotState, Backend: s.key, Slot: sl.id, From: from, To: StateClosed})
				}
			}
		}
		for _, sl := range idle {
			if isIdle[sl] {
				s.pushIdle(sl, sl.idleSince)
			}
		}
		s.mu.Unlock()
	}
	for _, c := range toClose {
		p.closeConn(c)
	}

	for i, in := range infos {
		s := in.s
		add := min(wanted[i]-in.live, room, p.pol.MaxPerBackend-in.existing)
		if add <= 0 {
			continue
		}
		room -= add
		s.mu.Lock()
		if s.getHealth() == HealthRemoved {
			s.mu.Unlock()
			continue
		}
		newSlots := make([]*slot[C], 0, add)
		for range add {
			sl := &slot[C]{id: p.slotIDs.Add(1), set: s, busy: true}
			if !s.idle.place(sl) {
				break // cannot happen: a set has at most MaxPerBackend slots
			}
			sl.setState(StateConnecting)
			s.slots = append(s.slots, sl)
			p.slotCount.Add(1)
			newSlots = append(newSlots, sl)
			if observing {
				events = append(events, Event{Kind: EventSlotState, Backend: s.key, Slot: sl.id, From: StateClosed, To: StateConnecting})
			}
		}
		s.mu.Unlock()
		for _, sl := range newSlots {
			p.spawn(ctx, func(ctx context.Context) { p.connect(ctx, s, sl) })
		}
	}
	for i, in := range infos {
		in.s.mu.Lock()
		in.s.wanted = wanted[i]
		in.s.mu.Unlock()
	}
	if observing {
		for _, e := range events {
			p.emit(e)
		}
		p.emit(Event{Kind: EventRebalance, Slots: wantedTotal})
	}
}

// distribute splits total slots over backends with the given weights: one
// each first (while there are enough), then each next slot to the backend
// that has the fewest for its weight, none beyond limit. With equal weights
// the shares differ by at most one.
func distribute(total int, weights []uint64, limit int) []int {
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
	for ; total > 0; total-- {
		best := -1
		for i, w := range weights {
			if shares[i] >= limit {
				continue
			}
			// (shares[i]+1)/w < (shares[best]+1)/weights[best]
			if best < 0 || uint64(shares[i]+1)*weights[best] < uint64(shares[best]+1)*w {
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
