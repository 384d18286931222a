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
// their index in a fixed table, and the head carries a version that every
// push and pop changes, so a pop that read a head since replaced fails its
// compare-and-swap and tries again, rather than installing a stale link
// (the ABA problem).
type idleStack[C any] struct {
	// head is version<<32 | (index+1) of the top slot; index+1 == 0 means
	// empty.
	head atomic.Uint64
	// table holds the set's slots by index. Its size is the most slots a
	// set can have, MaxPerBackend.
	table []atomic.Pointer[slot[C]]
	// n counts the slots on the stack, for Stats and the picker.
	n atomic.Int32
}

func newIdleStack[C any](size int) idleStack[C] {
	return idleStack[C]{table: make([]atomic.Pointer[slot[C]], size)}
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
		sl := st.table[top-1].Load()
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

// place gives sl a free index in the table; set.mu must be held. It
// reports false if the table is full, which the caps rule out.
func (st *idleStack[C]) place(sl *slot[C]) bool {
	for i := range st.table {
		if st.table[i].Load() == nil {
			sl.idx = uint32(i)
			st.table[i].Store(sl)
			return true
		}
	}
	return false
}

// forget frees sl's index; set.mu must be held and sl must not be on the
// stack.
func (st *idleStack[C]) forget(sl *slot[C]) {
	if st.table[sl.idx].Load() == sl {
		st.table[sl.idx].Store(nil)
	}
}
