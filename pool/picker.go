package pool

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// picker is an immutable snapshot of the backends a claim may use, sorted
// by priority. Claims read it without a lock; the control loop replaces it
// whenever a backend comes, goes or changes health, and when a backend
// that had no slots is about to get one.
type picker[C any] struct {
	entries []pickEntry[C]
	// stocked holds, for each tier, its entries whose set had slots or
	// wanted some when the picker was built: the only ones that can have
	// an idle slot, since a set gets its first slot only when a
	// rebalance wants it to have some, and that rebuilds the picker (see
	// set.setWantedLocked).
	stocked [][]pickEntry[C]
	// reported: the resolver has reported a set, or failed before it
	// found one.
	reported bool
	// verdict is why the resolver has no backends: its last lookup's
	// error, when it has reported none or an empty set. Nil otherwise.
	verdict error
	// offline: some backend is offline.
	offline bool
	// drained: some backend is drained (left out of entries); claims
	// that nothing else can serve wait for it to come back.
	drained bool
}

type pickEntry[C any] struct {
	set     *set[C]
	backend resolver.Backend
	// roleGen is the set's roleGen when backend was read: a role
	// changed since makes accepts read the backend afresh.
	roleGen uint32
	// weight is the backend's weight as slow start has it (see
	// set.warmth).
	weight float64
	// offset is added to the set's served count to place it in the
	// round robin (see level).
	offset float64
	health Health
	// suspect: the set was under suspicion when the snapshot was built
	// (see rebuildPicker).
	suspect bool
	end     int // index in picker.entries past the last entry of its tier
	tier    int // its tier's index in picker.stocked
}

// exactMax is the largest tier choose scans in full. In a larger tier it
// looks only at the backends with slots, and when those are more than
// exactMax too it compares two of them drawn at random (the power of two
// choices) rather than all, so that a claim costs the same with a
// thousand backends as with three.
const exactMax = 8

// sampleRounds bounds how many pairs choose draws in a large tier before
// it scans every backend with slots: the draws miss only when few of
// those have an idle slot.
const sampleRounds = 4

// choose returns the set a claim with filter f should take an idle slot
// from, or nil when no set it may use has one.
//
// Only the lowest priority tier with a backend that is not offline counts.
// Within it, backends not suspected of failure come first. Among those,
// the claim goes round robin in proportion to weight: to the backend that
// has served the fewest claims for its weight, so that backends of equal
// weight serve equal shares however fast each one is (a backend joining
// the round robin is levelled first: see level), ties going to the first
// in the pool's own order (see set.tie). Load bounds the
// round robin: a backend with more than loadFactor times the outstanding
// claims (for its weight) of the least loaded one, plus loadSlack, is
// passed over, so a backend that backs up (slow, or hung) stops taking
// claims long before its slots run out.
//
// In a tier of more than exactMax backends with slots, the same rules
// pick the better of two backends drawn at random: shares are even only
// on average, and the claim costs the same however large the tier.
func (pk *picker[C]) choose(f Filter) *set[C] {
	es := pk.entries
	lo := 0
	for lo < len(es) && (es[lo].health == HealthOffline || !es[lo].accepts(f)) {
		lo++
	}
	if lo == len(es) {
		return nil
	}
	tier := es[lo:es[lo].end]
	if len(tier) > exactMax {
		tier = pk.stocked[es[lo].tier]
		if len(tier) > exactMax {
			if s, ok := sample(tier, f); ok {
				return s
			}
		}
	}
	// First pass: are there unsuspected candidates, and the least load.
	clean, minLoad := false, math.Inf(1)
	for i := range tier {
		e := &tier[i]
		if !e.usable(f) {
			continue
		}
		suspect := e.set.suspect.Load()
		load := e.load()
		if !suspect && !clean {
			clean, minLoad = true, load
		} else if suspect == !clean {
			minLoad = min(minLoad, load)
		}
	}
	bound := minLoad*loadFactor + loadSlack
	// Second pass: the fewest served for its weight, within the bound.
	var best *pickEntry[C]
	var bestServed float64
	for i := range tier {
		e := &tier[i]
		if !e.usable(f) || (clean && e.set.suspect.Load()) {
			continue
		}
		if e.load() > bound {
			continue
		}
		served := e.ratio()
		if best == nil || served < bestServed {
			best, bestServed = e, served
		}
	}
	if best == nil {
		return nil
	}
	return best.set
}

// accepts reports whether filter f accepts e's backend. A backend whose
// role changed since the snapshot was built is judged by its role now,
// so that no claim goes to a replica just promoted (or a primary just
// demoted) in the moment before the control loop rebuilds the picker.
func (e *pickEntry[C]) accepts(f Filter) bool {
	switch {
	case f == nil:
		return true
	case e.set.roleGen.Load() == e.roleGen:
		return f(e.backend)
	default:
		return f(e.set.backendValue())
	}
}

// usable reports whether a claim with filter f may take an idle slot of e.
func (e *pickEntry[C]) usable(f Filter) bool {
	return !e.set.idle.empty() && e.health != HealthOffline && e.accepts(f)
}

// ratio returns the claims e has served per unit of weight, as the
// round robin counts them (see level).
func (e *pickEntry[C]) ratio() float64 {
	return (float64(e.set.served.Load()) + e.offset) / e.weight
}

// load returns e's outstanding claims per unit of weight.
func (e *pickEntry[C]) load() float64 {
	return float64(e.set.inUse.Load()) / e.weight
}

// sample is choose's rule applied to pairs of entries of tier (more than
// one) drawn at random: it returns the better of the first pair it can
// use, unless that one is suspected, in which case it draws again. After
// sampleRounds pairs without a usable one it gives up: few of the tier's
// sets have an idle slot, and the caller scans them all.
func sample[C any](tier []pickEntry[C], f Filter) (*set[C], bool) {
	n := uint64(len(tier))
	var best *pickEntry[C]
	for range sampleRounds {
		// Two distinct indexes from one random number, by multiply and
		// shift (its high bits for i, its low bits for j).
		r := rand.Uint64()
		i := (r >> 32) * n >> 32
		j := (i + 1 + (r&math.MaxUint32)*(n-1)>>32) % n
		for _, e := range [2]*pickEntry[C]{&tier[i], &tier[j]} {
			if e.usable(f) {
				best = better(best, e)
			}
		}
		if best != nil && !best.set.suspect.Load() {
			return best.set, true
		}
	}
	if best != nil {
		return best.set, true
	}
	return nil, false
}

// better returns whichever of a (nil: none) and b a claim should prefer:
// the one not suspected, else the one not past the load bound of the
// other, else the one that served fewer claims for its weight (a, if
// they served as many).
func better[C any](a, b *pickEntry[C]) *pickEntry[C] {
	if a == nil {
		return b
	}
	if sa, sb := a.set.suspect.Load(), b.set.suspect.Load(); sa != sb {
		if sa {
			return b
		}
		return a
	}
	la, lb := a.load(), b.load()
	switch {
	case la > lb*loadFactor+loadSlack:
		return b
	case lb > la*loadFactor+loadSlack:
		return a
	}
	if b.ratio() < a.ratio() {
		return b
	}
	return a
}

// The load bound of choose: a backend may carry up to loadFactor times
// the outstanding claims of the least loaded one, plus loadSlack, per
// unit of weight.
const (
	loadFactor = 2
	loadSlack  = 2
)

// usable reports whether some backend that is not offline passes f, and
// whether some offline one does.
func (pk *picker[C]) usable(f Filter) (online, offline bool) {
	for i := range pk.entries {
		e := &pk.entries[i]
		if !e.accepts(f) {
			continue
		}
		if e.health == HealthOffline {
			offline = true
		} else {
			online = true
		}
	}
	return online, offline
}

// hopeless returns why a claim with filter f cannot be served and should
// fail at once, or nil if it may wait. An unfiltered claim fails when no
// backend is online or unknown; a filtered one only when no backend at
// all is, because what a filter accepts can change while it waits (a
// backend's role, say).
func (pk *picker[C]) hopeless(f Filter) error {
	if !pk.reported {
		return nil // the resolver has not spoken yet
	}
	online, offline := pk.usable(f)
	if online || pk.drained {
		return nil
	}
	if f != nil {
		if anyOnline, anyOffline := pk.usable(nil); anyOnline {
			return nil
		} else {
			offline = anyOffline
		}
	}
	if offline {
		return ErrNoBackendsOnline
	}
	return ErrNoBackends
}

// anyIdle reports whether any set in the snapshot has an idle slot.
func (pk *picker[C]) anyIdle() bool {
	for i := range pk.entries {
		if !pk.entries[i].set.idle.empty() {
			return true
		}
	}
	return false
}

// rebuildPicker publishes a new snapshot of the claimable backends.
func (p *Pool[C]) rebuildPicker() {
	old := p.picker.Load()
	// A backend under suspicion has no idle connection (they are all
	// being checked) and claims pass it by: it rejoins the round robin
	// at the level of the others, not owed the claims it missed.
	// Suspicion coming and going marks the picker dirty, so that a
	// snapshot sees it.
	steady := make(map[*set[C]]pickEntry[C], len(old.entries))
	for _, e := range old.entries {
		if e.health == HealthOnline && !e.suspect && !e.set.suspect.Load() {
			steady[e.set] = e
		}
	}
	mnow := p.mono(time.Now())
	p.mu.Lock()
	sets := p.setList()
	pk := &picker[C]{reported: p.updates > 0}
	if p.known == 0 && p.lookupErr != nil {
		pk.reported, pk.verdict = true, p.lookupErr
	}
	p.mu.Unlock()
	for _, s := range sets {
		h := s.getHealth()
		if h == HealthRemoved {
			continue
		}
		if s.drained.Load() {
			pk.drained = true
			continue
		}
		gen := s.roleGen.Load() // before the role it counts
		b := s.backendValue()
		pk.entries = append(pk.entries, pickEntry[C]{set: s, backend: b, roleGen: gen, weight: s.pickWeight(b, mnow), health: h, suspect: s.suspect.Load()})
	}
	// Within a tier, each pool has its own order (see set.tie), which
	// breaks choose's ties.
	slices.SortFunc(pk.entries, func(a, b pickEntry[C]) int {
		return cmp.Or(cmp.Compare(a.backend.Priority, b.backend.Priority),
			cmp.Compare(a.set.tie, b.set.tie),
			cmp.Compare(a.set.key.Host, b.set.key.Host),
			cmp.Compare(a.set.key.Addr, b.set.key.Addr))
	})
	for lo := 0; lo < len(pk.entries); {
		hi := lo + 1
		for hi < len(pk.entries) && pk.entries[hi].backend.Priority == pk.entries[lo].backend.Priority {
			hi++
		}
		level(pk.entries[lo:hi], steady)
		var stocked []pickEntry[C]
		for i := lo; i < hi; i++ {
			e := &pk.entries[i]
			e.end, e.tier = hi, len(pk.stocked)
			pk.offline = pk.offline || e.health == HealthOffline
			if e.set.stocked() {
				stocked = append(stocked, *e)
			}
		}
		pk.stocked = append(pk.stocked, stocked)
		lo = hi
	}
	p.picker.Store(pk)
}

// pickWeight returns the weight claims give s at mnow: b's, as slow start
// has it.
func (s *set[C]) pickWeight(b resolver.Backend, mnow int64) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(weightOf(b)) * s.warmth(mnow)
}

// level keeps the round robin fair as backends join it and change
// weight, by setting each entry's offset. steady holds the entries of
// the backends that were online in the previous snapshot.
//
// A steady backend keeps its place: its served count per weight (offset
// included) is what it was, whatever its weight is now (it grows in slow
// start), so it is neither owed claims nor owes them. A backend that
// joins the round robin (new to the picker, back from offline or back
// after its removal) starts at the tier's level, the served count per
// weight of the busiest steady backend: it is owed nothing (it would
// otherwise take every claim until its served count caught up with those
// of the backends that kept serving) and owes nothing (a count kept from
// before it went away would starve it). In a tier without a steady
// backend, those joining start level with the busiest of them. The
// offsets are floats, so that the many small
// steps of a slow start lose nothing to rounding.
func level[C any](tier []pickEntry[C], steady map[*set[C]]pickEntry[C]) {
	top, found := 0.0, false
	for i := range tier {
		e := &tier[i]
		was, ok := steady[e.set]
		if !ok || e.health == HealthOffline {
			continue
		}
		served := float64(e.set.served.Load())
		e.offset = (served+was.offset)*e.weight/was.weight - served
		top, found = max(top, e.ratio()), true
	}
	for i := range tier {
		e := &tier[i]
		if _, ok := steady[e.set]; !ok && e.health != HealthOffline {
			if !found {
				top = 0
				for _, f := range tier {
					top = max(top, float64(f.set.served.Load())/f.weight)
				}
				found = true
			}
			e.offset = top*e.weight - float64(e.set.served.Load())
		}
	}
}

// pickerHealthy reports whether no backend in the snapshot is offline. A
// full pool with an offline backend may still move that backend's slots
// to healthy ones.
func (p *Pool[C]) pickerHealthy() bool {
	return !p.picker.Load().offline
}
