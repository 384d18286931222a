package pool

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// FuzzPoolInvariants throws random backend-set changes, failures, claims,
// releases and discards at a pool, in virtual time, and checks after every
// step that:
//   - the slots never exceed MaxSlots in all or MaxPerBackend per backend,
//     and the open connections never exceed MaxSlots;
//   - every claim the test holds is one the pool counts as claimed, on a
//     connection that is open and held by nobody else (no claim is lost
//     or handed out twice);
//
// and once the pool settles, that every healthy backend has a slot and the
// slots of equal-weight healthy backends are within one of even. The seed
// corpus runs with the tests; `go test -fuzz FuzzPoolInvariants ./pool`
// explores further.
func FuzzPoolInvariants(f *testing.F) {
	for seed := range uint64(24) {
		r := rand.New(rand.NewPCG(seed, seed*7+1))
		b := make([]byte, 40+r.IntN(120))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) < 4 {
			return
		}
		synctest.Test(t, func(t *testing.T) { runInvariants(t, ops) })
	})
}

func runInvariants(t *testing.T, ops []byte) {
	next := func() byte {
		if len(ops) == 0 {
			return 0
		}
		b := ops[0]
		ops = ops[1:]
		return b
	}
	pol := Policy{
		MaxSlots:       3 + int(next()%10),
		MaxPerBackend:  2 + int(next()%6),
		Spares:         int(next() % 7),
		Recycle:        recycleMode(next()%2 == 0),
		ClaimTimeout:   time.Second,
		BackoffMin:     10 * time.Millisecond,
		BackoffMax:     500 * time.Millisecond,
		HealthInterval: time.Second,
		HealthTimeout:  100 * time.Millisecond,
		ConnectTimeout: 200 * time.Millisecond,
	}
	universe := backends(6)
	fr := newFakeResolver()
	fc := newFakeConnector()
	p, err := New(fr, fc, pol)
	if err != nil {
		t.Fatal(err)
	}
	current := universe[:3]
	fr.set(current...)
	down := map[string]bool{}
	var held []Claim[*fakeConn]

	check := func(step int) {
		t.Helper()
		synctest.Wait()
		st := p.Stats()
		claimed := map[string]int{}
		for _, c := range held {
			claimed[c.Backend().Addr]++
		}
		total := 0
		for _, b := range st.Backends {
			total += b.Slots()
			if b.Slots() > pol.MaxPerBackend {
				t.Fatalf("step %d: backend %s has %d slots, cap %d", step, b.Backend.Addr, b.Slots(), pol.MaxPerBackend)
			}
			if b.Claimed != claimed[b.Backend.Addr] {
				t.Fatalf("step %d: pool counts %d claims on %s, the test holds %d", step, b.Claimed, b.Backend.Addr, claimed[b.Backend.Addr])
			}
		}
		if total > pol.MaxSlots {
			t.Fatalf("step %d: %d slots, cap %d", step, total, pol.MaxSlots)
		}
		if fc.peakOpen() > pol.MaxSlots {
			t.Fatalf("step %d: %d connections were open at once, cap %d", step, fc.peakOpen(), pol.MaxSlots)
		}
		for _, c := range held {
			if c.Conn().closed.Load() {
				t.Fatalf("step %d: held connection %d was closed under its claim", step, c.Conn().id)
			}
		}
	}

	for step := 0; len(ops) > 0; step++ {
		switch op := next() % 8; op {
		case 0: // new backend set
			mask := next()
			current = nil
			for i, b := range universe {
				if mask&(1<<i) != 0 {
					current = append(current, b)
				}
			}
			fr.set(current...)
		case 1: // a backend goes down or comes back
			b := universe[int(next())%len(universe)].Addr
			down[b] = !down[b]
			if down[b] {
				fc.setMode(b, backendMode{connectErr: errors.New("refused"), checkErr: errors.New("dead")})
			} else {
				fc.setMode(b, backendMode{})
			}
		case 2, 3: // claim
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			c, err := p.Claim(ctx)
			cancel()
			if err == nil {
				if c.Conn().claimed.Swap(true) {
					t.Fatalf("step %d: connection %d handed out twice", step, c.Conn().id)
				}
				held = append(held, c)
			} else if !errors.Is(err, ErrClaimTimeout) && !errors.Is(err, ErrNoBackends) && !errors.Is(err, ErrNoBackendsOnline) {
				t.Fatalf("step %d: claim failed with unexpected error %v", step, err)
			}
		case 4, 5: // release
			if len(held) > 0 {
				i := int(next()) % len(held)
				release(held[i])
				held = append(held[:i], held[i+1:]...)
			}
		case 6: // discard
			if len(held) > 0 {
				i := int(next()) % len(held)
				held[i].Conn().claimed.Store(false)
				held[i].Discard(errors.New("broken"))
				held = append(held[:i], held[i+1:]...)
			}
		case 7: // time passes
			time.Sleep(time.Duration(next()) * 10 * time.Millisecond)
		}
		check(step)
	}

	// Give everything back and let the pool settle: past the backoff, the
	// offline detection and a periodic rebalance.
	for _, c := range held {
		release(c)
	}
	held = nil
	time.Sleep(3 * DefaultRebalanceInterval)
	check(-1)
	st := p.Stats()
	var counts []int
	offline := 0
	for _, b := range st.Backends {
		switch b.Health {
		case HealthOnline:
			counts = append(counts, b.Slots())
		case HealthOffline:
			offline++
			if b.Slots() != 1 && offline <= pol.MaxSlots {
				t.Errorf("offline backend %s has %d slots, want 1", b.Backend.Addr, b.Slots())
			}
		}
	}
	// With room for all, every healthy backend has a slot, and equal
	// weights get shares within one of each other.
	if len(counts) > 0 && len(counts) <= pol.MaxSlots-offline {
		for i, n := range counts {
			if n == 0 {
				t.Errorf("healthy backend %d of %d has no slot: %+v", i, len(counts), st)
			}
		}
		lo, hi := counts[0], counts[0]
		for _, n := range counts {
			lo, hi = min(lo, n), max(hi, n)
		}
		if hi-lo > 1 && hi < pol.MaxPerBackend {
			t.Errorf("healthy backends' slots %v are not within one of even", counts)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := fc.openConns(); n != 0 {
		t.Errorf("%d connections open after Close", n)
	}
	fc.check(t)
}
