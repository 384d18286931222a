package srv_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

// These tests run Run with the default intervals in a synctest bubble, so
// that minutes pass in virtual time. The DNS server runs outside the
// bubble: while Run waits for its (real, loopback) answer the bubble is
// not idle, so virtual time stands still, and the timers between lookups
// are virtual. Faults that make the client wait for a timeout would wait
// in real time, so they are tested elsewhere with short timeouts.

// runVirtual runs an SRV resolver with default intervals for d of virtual
// time and returns the number of updates it made and the events it sent.
func runVirtual(t *testing.T, s *dnstest.Server, d time.Duration, during func()) (updates int, events []srv.Event) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		cfg := srv.Config{
			Servers:  []string{s.Addr()},
			Observer: srv.ObserverFunc(func(ev srv.Event) { events = append(events, ev) }),
		}
		r, err := srv.New(svc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx, resolver.UpdateFunc(func([]resolver.Backend) { updates++ })) }()
		synctest.Wait()
		if during != nil {
			during()
		}
		time.Sleep(d)
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run() = %v, want context.Canceled", err)
		}
	})
	return updates, events
}

func TestSRVRefreshVirtualTime(t *testing.T) {
	tests := []struct {
		ttl    uint32
		period time.Duration
		wait   time.Duration // the refresh interval the TTL should give
	}{
		{0, time.Minute, srv.DefaultMinRefresh},
		{5, time.Minute, 5 * time.Second},
		{3600, 10 * time.Minute, srv.DefaultMaxRefresh},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("TTL %d", tt.ttl), func(t *testing.T) {
			s := dnstest.NewServer(t)
			simple(s, svc, tt.ttl)
			updates, _ := runVirtual(t, s, tt.period, nil)
			// One lookup at start, then one per wait plus up to 10%.
			most := 1 + int(tt.period/tt.wait)
			least := 1 + int(tt.period/(tt.wait+tt.wait/10))
			if n := s.QueriesFor(svc, dns.TypeSRV); n < least || n > most {
				t.Errorf("TTL %d: %d SRV lookups in %v, want %d to %d (one per %v)", tt.ttl, n, tt.period, least, most, tt.wait)
			}
			if updates != 1 {
				t.Errorf("%d updates, want 1", updates)
			}
		})
	}
}

func TestSRVBackoffVirtualTime(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, svc, 30)
	updates, events := runVirtual(t, s, 5*time.Minute, func() { s.SetFault(dnstest.FaultServFail) })
	if updates != 1 {
		t.Errorf("%d updates while DNS failed, want only the first", updates)
	}
	var waits []time.Duration
	for _, ev := range events {
		if ev.Kind == srv.EventLookupFailed {
			waits = append(waits, ev.Next)
		}
	}
	// Full jitter: each wait lies between RetryMin and a ceiling that
	// doubles from 2·RetryMin up to RetryMax.
	lo, ceil := srv.DefaultRetryMin, 2*srv.DefaultRetryMin
	var total time.Duration
	low := 0 // waits under half their ceiling
	for i, w := range waits {
		if w < lo || w > ceil {
			t.Errorf("wait after failure %d = %v, want between %v and %v", i+1, w, lo, ceil)
		}
		if w < ceil/2 {
			low++
		}
		total += w
		ceil = min(2*ceil, srv.DefaultRetryMax)
	}
	// Drawn from the whole range, nearly half the waits fall under half
	// their ceiling; a jitter added to a wait of half the ceiling would
	// put none there.
	if low < len(waits)/5 {
		t.Errorf("%d of %d waits in the lower half of their range, want about half: %v", low, len(waits), waits)
	}
	// The first lookup came after the 30s TTL; then 4.5 minutes of
	// retries, each about 15 s on average once the ceiling is at 30 s:
	// about 22, and never fewer than the 13 that waits at the ceiling give.
	if len(waits) < 12 || len(waits) > 40 {
		t.Errorf("%d failed lookups in 5 minutes of SERVFAIL, want about 22", len(waits))
	}
}
