package pool

import "sync/atomic"

// idleStack holds a set's idle slots, the most recently returned on top.
//
// Last in, first out keeps the busiest connections busy and their server
// processes warm, and lets the others sit idle long enough to be trimmed;
// handing connections out in turn instead costs several microseconds per
// query on a database server (measured with BenchmarkVersusDirect).
//
// It is a lock-free stack (Treiber's): claims and releases never wait for
// each other, however many goroutines share a backend. Slots are named by
// their index in a table, and the head carries a version that every push
// and pop changes, so a pop that read a head since replaced fails its
// compare-and-swap and tries again, rather than installing a stale link
// (the ABA problem).
//
// The table starts small and grows, under set.mu, as the set places
// slots, up to the most slots a set can have: its memory follows the
// connections the pool opens, not the caps it is given.
type idleStack[C any] struct {
	// head is version<<32 | (index+1) of the top slot; index+1 == 0 means
	// empty.
	head atomic.Uint64
	// table holds the set's slots by index. It is replaced by a larger
	// copy when place finds it full, never changed in length.
	table atomic.Pointer[[]atomic.Pointer[slot[C]]]
	// max is the most entries the table may grow to.
	max int
	// n counts the slots on the stack, for Stats and the picker.
	n atomic.Int32
}

// initialStack is how many entries a stack's table starts with, unless
// max is less.
const initialStack = 8

// init readies an empty stack for a set of at most max slots.
func (st *idleStack[C]) init(max int) {
	st.max = max
	t := make([]atomic.Pointer[slot[C]], min(max, initialStack))
	st.table.Store(&t)
}

// push puts sl, which the caller owns, on top.
func (st *idleStack[C]) push(sl *slot[C]) {
	for {
		old := st.head.Load()
		sl.next.Store(uint32(old))
		if st.head.CompareAndSwap(old, (old>>32+1)<<32|uint64(sl.idx+1)) {
			st.n.Add(1)
			return
		}
	}
}

// pop takes the top slot, or returns nil when the stack is empty.
func (st *idleStack[C]) pop() *slot[C] {
	for {
		old := st.head.Load()
		top := uint32(old)
		if top == 0 {
			return nil
		}
		// Loaded after head, the table holds the top slot: place
		// stores a slot in the table before anyone can push it.
		t := *st.table.Load()
		sl := t[top-1].Load()
		if sl == nil {
			continue // the slot was closed since head was read: head has moved
		}
		next := sl.next.Load()
		if st.head.CompareAndSwap(old, (old>>32+1)<<32|uint64(next)) {
			st.n.Add(-1)
			return sl
		}
	}
}

// empty reports whether the stack looked empty.
func (st *idleStack[C]) empty() bool { return uint32(st.head.Load()) == 0 }

// place gives sl a free index in the table, growing the table if it is
// full; set.mu must be held. It reports false if the table has grown to
// max and is full, which the caps rule out.
func (st *idleStack[C]) place(sl *slot[C]) bool {
	t := *st.table.Load()
	for i := range t {
		if t[i].Load() == nil {
			sl.idx = uint32(i)
			t[i].Store(sl)
			return true
		}
	}
	if len(t) >= st.max {
		return false
	}
	grown := make([]atomic.Pointer[slot[C]], min(max(2*len(t), 1), st.max))
	for i := range t {
		grown[i].Store(t[i].Load())
	}
	sl.idx = uint32(len(t))
	grown[sl.idx].Store(sl)
	st.table.Store(&grown)
	return true
}

// forget frees sl's index; set.mu must be held and sl must not be on the
// stack.
func (st *idleStack[C]) forget(sl *slot[C]) {
	t := *st.table.Load()
	if t[sl.idx].Load() == sl {
		t[sl.idx].Store(nil)
	}
}

// size returns how many entries the table has now.
func (st *idleStack[C]) size() int { return len(*st.table.Load()) }
