package pool

import (
	"context"
	"runtime"
	"testing"
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
// control loop and the resolver, however many backends and slots.
func TestIdlePoolRunsTwoGoroutines(t *testing.T) {
	for _, n := range []int{10, 200} {
		before := runtime.NumGoroutine()
		p := idlePool(t, n)
		// Connection goroutines finish just after their slot turns idle.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine()-before != 2 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		if got := runtime.NumGoroutine() - before; got != 2 {
			t.Errorf("idle pool of %d slots over 10 backends runs %d goroutines, want 2", n, got)
		}
		p.Close(context.Background())
	}
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
		p.Close(context.Background())
	}
	b.ReportMetric(perSlot, "bytes/slot")
	b.ReportMetric(0, "ns/op")
}
