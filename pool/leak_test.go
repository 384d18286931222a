package pool

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// leakyClaim claims a connection and keeps it: its frame must be in the
// leak report.
func leakyClaim(t *testing.T, p *Pool[*fakeConn]) Claim[*fakeConn] {
	return claimFrom(t, p, t.Context())
}

// TestLeakReported: a claim held past the leak threshold is logged once
// at Warn with the stack of the goroutine that made it, and counted; a
// claim released in time is not.
func TestLeakReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &recordHandler{level: slog.LevelInfo}
		p, _ := newTestPool(t, Policy{LeakThreshold: time.Second, Observer: LogEvents(slog.New(h))}, backends(1)...)
		release(claimFrom(t, p, t.Context())) // in time: never reported
		c := leakyClaim(t, p)
		time.Sleep(900 * time.Millisecond)
		synctest.Wait()
		if n := p.Stats().Leaks; n != 0 {
			t.Fatalf("Leaks = %d before the threshold, want 0", n)
		}
		time.Sleep(time.Second / 2) // past the threshold, within 1¼ of it
		synctest.Wait()
		if n := p.Stats().Leaks; n != 1 {
			t.Fatalf("Leaks = %d after the threshold, want 1", n)
		}
		time.Sleep(5 * time.Second) // reported once only
		synctest.Wait()
		release(c)
		if n := p.Stats().Leaks; n != 1 {
			t.Errorf("Leaks = %d later, want still 1", n)
		}
		var leaks []slog.Record
		for _, r := range h.records() {
			if r.Message == "pool: connection held past the leak threshold" {
				leaks = append(leaks, r)
			}
		}
		if len(leaks) != 1 {
			t.Fatalf("%d leak records, want 1", len(leaks))
		}
		a := attrs(leaks[0])
		if leaks[0].Level != slog.LevelWarn || a["backend"] != backends(1)[0].Addr {
			t.Errorf("leak record at %v for %q, want Warn for the backend", leaks[0].Level, a["backend"])
		}
		stack := a["stack"]
		for _, want := range []string{"github.com/qorb-go/qorb/pool.leakyClaim()", "leak_test.go:"} {
			if !strings.Contains(stack, want) {
				t.Errorf("stack does not contain %q:\n%s", want, stack)
			}
		}
		if strings.Contains(stack, "pool.(*Pool[...]).ClaimFiltered") || strings.Contains(stack, "traceClaim") {
			t.Errorf("stack shows the pool's own frames:\n%s", stack)
		}
	})
}

// TestLeakDetectionOffRecordsNothing: without a threshold, a claim records
// no stack.
func TestLeakDetectionOffRecordsNothing(t *testing.T) {
	p, _ := newTestPool(t, Policy{}, backends(1)...)
	c := claimFrom(t, p, t.Context())
	defer release(c)
	if tr := c.slot.trace.Load(); tr != nil {
		t.Errorf("claim recorded a stack with leak detection off")
	}
}

// BenchmarkClaimReleaseLeakDetection is BenchmarkClaimRelease's one
// backend and one goroutine with leak detection off and on: on, each
// claim records its stack.
func BenchmarkClaimReleaseLeakDetection(b *testing.B) {
	for _, threshold := range []time.Duration{0, time.Minute} {
		b.Run("threshold="+threshold.String(), func(b *testing.B) {
			r, err := resolver.NewStatic(backends(1)...)
			if err != nil {
				b.Fatal(err)
			}
			p, err := New(r, newFakeConnector(), Policy{
				MaxSlots: benchSize, Spares: benchSize, Recycle: RecycleInline,
				HealthInterval: -1, MaxLifetime: -1, MaxIdleTime: -1, LeakThreshold: threshold,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				c, err := p.Claim(ctx)
				if err != nil {
					b.Fatal(err)
				}
				c.Release()
			}
		})
	}
}
