package pool

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// nopConnector makes connections that cost nothing, so what a pool holds
// beyond them is the pool's own.
type nopConnector struct{}

func (nopConnector) Connect(context.Context, resolver.Backend) (struct{}, error) {
	return struct{}{}, nil
}
func (nopConnector) IsValid(context.Context, struct{}) error   { return nil }
func (nopConnector) OnRecycle(context.Context, struct{}) error { return nil }
func (nopConnector) Close(struct{}) error                      { return nil }

// idlePool starts a pool of n idle slots over 10 backends and waits until
// every slot is connected.
func idlePool(tb testing.TB, n int) *Pool[struct{}] {
	tb.Helper()
	r, err := resolver.NewStatic(backends(10)...)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := New[struct{}](r, nopConnector{}, Policy{
		MaxSlots: n, MaxPerBackend: n / 10, Spares: n,
		HealthInterval: -1, MaxLifetime: -1, MaxIdleTime: -1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		idle := 0
		for _, b := range p.Stats().Backends {
			idle += b.Idle
		}
		if idle == n {
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pool has %d idle slots after 10s, want %d", idle, n)
		}
		runtime.Gosched()
	}
}

// TestIdlePoolRunsTwoGoroutines checks the pool's goroutine budget: the
// control loop and the resolver, however many backends and slots; slot
// work (connecting, checking) borrows goroutines only while it runs.
func TestIdlePoolRunsTwoGoroutines(t *testing.T) {
	for _, n := range []int{10, 200} {
		p := idlePool(t, n)
		// Connection goroutines finish just after their slot turns idle.
		var long, short int
		deadline := time.Now().Add(10 * time.Second)
		for {
			long, short = poolGoroutines()
			if short == 0 || time.Now().After(deadline) {
				break
			}
			runtime.Gosched()
		}
		if long != 2 || short != 0 {
			t.Errorf("idle pool of %d slots over 10 backends runs %d goroutines of its own and %d for slot work, want 2 and 0", n, long, short)
		}
		p.Close()
	}
}

// poolGoroutines counts the goroutines New started (the control loop and
// the resolver) and those started for slot work.
func poolGoroutines() (long, short int) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "created by github.com/qorb-go/qorb/pool.New["):
			long++
		case strings.Contains(g, "created by github.com/qorb-go/qorb/pool.(*Pool[...]).spawn"):
			short++
		}
	}
	return long, short
}

// BenchmarkIdleSlotMemory reports what one idle slot costs beyond its
// connection, measured over a pool of 1000 idle slots.
func BenchmarkIdleSlotMemory(b *testing.B) {
	const n = 1000
	var perSlot float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p := idlePool(b, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSlot = float64(after.HeapAlloc-before.HeapAlloc) / n
		p.Close()
	}
	b.ReportMetric(perSlot, "bytes/slot")
	b.ReportMetric(0, "ns/op")
}

// TestIdleStackFollowsSlots checks that a set's idle stack grows with the
// slots the set has, not with the caps: a pool allowed 10,000 connections
// per backend that opens a few holds a few entries per backend, and one
// that opens more grows to hold them.
func TestIdleStackFollowsSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{MaxSlots: MaxSlotsLimit, MaxPerBackend: MaxSlotsLimit, Spares: 3}, backends(3)...)
		synctest.Wait()
		for _, s := range p.sets {
			if n := s.idle.size(); n > initialStack {
				t.Errorf("backend %s: idle stack of %d entries for %d slots, want at most %d", s.key, n, len(s.slots), initialStack)
			}
		}
		var held []Claim[*fakeConn]
		for range 100 {
			held = append(held, claimFrom(t, p, t.Context()))
		}
		synctest.Wait()
		for _, c := range held {
			release(c)
		}
		synctest.Wait()
		total := 0
		for _, s := range p.sets {
			s.mu.Lock()
			slots, size := len(s.slots), s.idle.size()
			s.mu.Unlock()
			total += slots
			if size < slots || size > 2*slots {
				t.Errorf("backend %s: idle stack of %d entries for %d slots, want between %d and %d", s.key, size, slots, slots, 2*slots)
			}
		}
		if total < 100 {
			t.Errorf("%d slots after 100 claims at once, want at least 100", total)
		}
	})
}
