package pool

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// rebalanceSlots recomputes how many slots each backend should have (see
// plan) and opens or closes slots to match.
//
// Slots open at once, unless the connect-rate limit paces them (see
// Policy.ConnectRate). Surplus slots of healthy backends close only on
// the periodic rebalance, and then only idle ones not claimed for a whole
// RebalanceInterval; or when their room is needed elsewhere. So the pool shrinks slowly after a burst, and a steady load
// opens no connections. Claimed slots are never taken away: a surplus
// claimed slot closes when it comes back. After SetPolicy lowered a cap,
// the surplus closes at once, idle slots first (see shrinkLocked).
func (p *Pool[C]) rebalanceSlots(ctx context.Context, now time.Time, periodic bool) {
	capsCut := p.capsCut.Swap(false)
	mnow := p.mono(now)
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	sortSets(sets)
	infos := make([]setInfo, len(sets))
	for i, s := range sets {
		infos[i] = s.info(mnow, periodic)
	}
	// Probe connections (see stall.go) take room as closing ones do.
	pol := p.policy()
	waiting := int(p.waiting.Load())
	if p.paused.Load() {
		waiting = 0 // claims held by Pause do not grow the pool
	}
	pl := plan(infos, *pol, waiting, int(p.closingN.Load()+p.probing.Load()), periodic)

	a := p.newAfter()
	room := pl.room
	for i, s := range sets {
		in := infos[i]
		excess := in.live - pl.wanted[i]
		if excess <= 0 {
			continue
		}
		failed := in.health == HealthOffline || in.health == HealthRemoved || in.drained
		if failed || pl.shrink || periodic || capsCut {
			s.mu.Lock()
			room += s.shrinkLocked(excess, !failed && !pl.shrink && !capsCut, mnow, &a)
			s.mu.Unlock()
		}
	}
	var jobs []job[C]
	for i, s := range sets {
		in := infos[i]
		add := min(pl.wanted[i]-in.live, room, pol.MaxPerBackend-in.existing)
		if add <= 0 {
			continue
		}
		room -= add
		s.mu.Lock()
		for range add {
			if s.getHealth() == HealthRemoved || s.drained.Load() {
				break
			}
			sl, connect := s.newSlotLocked(mnow, &a)
			if sl == nil {
				break // cannot happen: a set has at most MaxPerBackend slots
			}
			if connect {
				jobs = append(jobs, job[C]{sl: sl, kind: StateConnecting})
			}
		}
		s.mu.Unlock()
	}
	for i, s := range sets {
		s.mu.Lock()
		s.setWantedLocked(pl.wanted[i], pl.full[i])
		s.mu.Unlock()
	}
	a.event(Event{Kind: EventRebalance, Slots: pl.total})
	p.finish(&a)
	for _, j := range jobs {
		p.start(ctx, j)
	}
}

// recentRebalances is how many RebalanceIntervals a backend's peak of
// claims keeps counting towards the slots the pool wants (see plan).
const recentRebalances = 3

// setInfo is what plan needs to know of one backend.
type setInfo struct {
	health Health
	// drained: Drain took it out of service; it gets no slots.
	drained bool
	prio    uint16
	// weight is the backend's weight, scaled by weightScale, and warm
	// that weight as slow start has it now (see set.warmth).
	weight, warm uint64
	tie          uint64 // the set's tie rank (see set.tie)
	// existing counts its slots, which all take room under the caps until
	// they close; live those not unwanted; claimed those claimed; pending
	// those being checked or recycled, soon idle again. recent is the
	// most claimed at once lately (see recentRebalances).
	existing, live, claimed, recent, pending int
}

// weightScale scales weights in plan, so that slow start can take a
// fraction of weight 1.
const weightScale = 1 << 10

// info returns what plan needs to know of s at mnow; on the periodic
// rebalance it also starts a new period of the peak of claims.
func (s *set[C]) info(mnow int64, periodic bool) setInfo {
	b := s.backendValue()
	w := weightOf(b) * weightScale
	in := setInfo{prio: b.Priority, weight: w, tie: s.tie}
	s.mu.Lock()
	defer s.mu.Unlock()
	in.health = s.getHealth()
	in.drained = s.drained.Load()
	in.warm = max(uint64(float64(w)*s.warmth(mnow)), 1)
	for _, sl := range s.slots {
		in.existing++
		if sl.unwanted.Load() {
			continue
		}
		in.live++
		switch sl.getState() {
		case StateClaimed:
			in.claimed++
		case StateChecking, StateRecycling:
			in.pending++
		}
	}
	in.recent = max(in.claimed, s.recentPeakLocked())
	if periodic {
		s.rollPeaksLocked()
	}
	return in
}

// slotPlan is what a rebalance decided.
type slotPlan struct {
	wanted []int // slots wanted per backend, in the order of the infos
	// full is what wanted would be if no backend were in slow start.
	full  []int
	total int // the sum of wanted
	// room is how many slots may open: MaxSlots less the slots there are
	// and the connections still closing.
	room int
	// shrink: the slots missing need more room than there is, so the
	// surplus slots of every backend close at once, not only idle ones.
	shrink bool
}

// plan decides how many slots each backend should have, given how many
// claims wait and how many connections are still closing.
//
// The pool wants, per backend, as many slots as were claimed at once
// lately (see recentRebalances), plus one per waiting claim beyond the
// slots soon idle again, plus Spares; never more than MaxSlots in all.
// Counting the recent peak, not the claims of the moment, keeps a steady
// load from growing and shrinking the pool. An offline backend keeps exactly one
// slot, which probes it. The rest go to the backends of the lowest
// priority tier that is not offline: one each first, then in proportion
// to weight (as slow start has it; equal weights: within one of even), at
// most MaxPerBackend each. Backends in higher tiers get none.
func plan(infos []setInfo, pol Policy, waiting, closing int, periodic bool) slotPlan {
	demand := pol.Spares
	existing, pending := 0, 0
	activePrio, haveActive := uint16(0), false
	for _, in := range infos {
		demand += in.recent
		pending += in.pending
		existing += in.existing
		if (in.health == HealthUnknown || in.health == HealthOnline) && !in.drained {
			if !haveActive || in.prio < activePrio {
				activePrio, haveActive = in.prio, true
			}
		}
	}
	demand += max(waiting-pending, 0)

	wanted, full := make([]int, len(infos)), make([]int, len(infos))
	budget := pol.MaxSlots
	var active []int
	for i, in := range infos {
		switch {
		case in.drained:
		case in.health == HealthOffline:
			if budget > 0 {
				wanted[i], full[i] = 1, 1
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
	weights, warm, ties := make([]uint64, len(active)), make([]uint64, len(active)), make([]uint64, len(active))
	warming := false
	for j, i := range active {
		weights[j], warm[j], ties[j] = infos[i].weight, infos[i].warm, infos[i].tie
		if warm[j] == 0 {
			warm[j] = weights[j] // not in slow start
		}
		warming = warming || warm[j] != weights[j]
	}
	for j, n := range distribute(total, warm, ties, pol.MaxPerBackend) {
		wanted[active[j]] = n
		full[active[j]] = n
	}
	if warming {
		for j, n := range distribute(total, weights, ties, pol.MaxPerBackend) {
			full[active[j]] = n
		}
	}

	pl := slotPlan{wanted: wanted, full: full, room: pol.MaxSlots - existing - closing}
	deficit := 0
	for i, in := range infos {
		deficit += max(0, wanted[i]-in.live)
		pl.total += wanted[i]
	}
	pl.shrink = deficit > pl.room
	return pl
}

// shrinkLocked closes up to excess of s's slots, cheapest first: slots
// without a connection, then idle ones, then
// ones busy with I/O, then claimed ones. Those busy or claimed are only
// marked unwanted and close when their I/O or claim ends. Gently, it
// closes only slots without a connection and idle slots not claimed for
// a whole RebalanceInterval, least lately claimed first. It returns how many slots it closed that held no
// connection, whose room is free at once.
func (s *set[C]) shrinkLocked(excess int, gently bool, mnow int64, a *after[C]) (freed int) {
	idle := s.drainIdleLocked()
	isIdle := make(map[*slot[C]]bool, len(idle))
	for _, sl := range idle {
		isIdle[sl] = true
	}
	// Idle slots close least lately claimed first: a connection a claim
	// used lately is likely to be used again, and sequential claims keep
	// theirs.
	byAge := slices.Clone(idle)
	slices.SortStableFunc(byAge, func(x, y *slot[C]) int { return cmp.Compare(x.claimedAt.Load(), y.claimedAt.Load()) })
	settled := mnow - int64(s.p.policy().RebalanceInterval)
	mark := func(sl *slot[C]) {
		sl.unwanted.Store(true)
		excess--
	}
	for _, sl := range append([]*slot[C](nil), s.slots...) {
		if excess > 0 && !sl.unwanted.Load() && sl.getState() == StateBackingOff && !sl.busy {
			mark(sl)
			if !sl.hasConn {
				freed++
			}
			s.closeSlotLocked(sl, StateBackingOff, a)
		}
	}
	busyPass := func(pass func(*slot[C]) bool) {
		for _, sl := range s.slots {
			if excess > 0 && !sl.unwanted.Load() && !isIdle[sl] && pass(sl) {
				mark(sl)
			}
		}
	}
	if !gently {
		busyPass(func(sl *slot[C]) bool { return sl.getState() == StateConnecting })
	}
	for _, sl := range byAge {
		if excess > 0 && !sl.unwanted.Load() && (!gently || sl.claimedAt.Load() <= settled) {
			mark(sl)
			delete(isIdle, sl)
			s.closeSlotLocked(sl, StateIdle, a)
		}
	}
	if !gently {
		for _, pass := range [...]func(*slot[C]) bool{
			func(sl *slot[C]) bool { return sl.getState() != StateClaimed },
			func(sl *slot[C]) bool { return sl.getState() == StateClaimed },
		} {
			busyPass(pass)
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
