package srv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/resolver/srv"
)

const svc = "_postgresql._tcp.db.test"

func TestSRVResolve(t *testing.T) {
	tests := []struct {
		name       string
		additional bool
		setup      func(s *dnstest.Server)
		want       []string
	}{
		{
			name:       "IPv4 from additional section",
			additional: true,
			setup:      func(s *dnstest.Server) { simple(s, svc, 30) },
			want:       []string{"pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20"},
		},
		{
			name:  "IPv4 asked for",
			setup: func(s *dnstest.Server) { simple(s, svc, 30) },
			want:  []string{"pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20"},
		},
		{
			name: "IPv4 and IPv6, several addresses per target",
			setup: func(s *dnstest.Server) {
				s.SetSRV(svc, dnstest.SRV{Port: 5432, Target: "pg1.db.test", Weight: 1, TTL: 30})
				s.SetA("pg1.db.test", 30, "127.0.0.2", "127.0.0.1")
				s.SetAAAA("pg1.db.test", 30, "::1")
			},
			want: []string{"pg1.db.test@127.0.0.1:5432 0/1", "pg1.db.test@127.0.0.2:5432 0/1", "pg1.db.test@[::1]:5432 0/1"},
		},
		{
			name: "several ports on one target",
			setup: func(s *dnstest.Server) {
				s.SetSRV(svc,
					dnstest.SRV{Port: 5433, Target: "pg1.db.test", TTL: 30},
					dnstest.SRV{Port: 5432, Target: "pg1.db.test", TTL: 30})
				s.SetA("pg1.db.test", 30, "127.0.0.1")
			},
			want: []string{"pg1.db.test@127.0.0.1:5432 0/0", "pg1.db.test@127.0.0.1:5433 0/0"},
		},
		{
			name: "priority and weight passed through, ordered by priority",
			setup: func(s *dnstest.Server) {
				s.SetSRV(svc,
					dnstest.SRV{Priority: 20, Weight: 5, Port: 1, Target: "b.db.test", TTL: 30},
					dnstest.SRV{Priority: 10, Weight: 60, Port: 2, Target: "c.db.test", TTL: 30},
					dnstest.SRV{Priority: 10, Weight: 40, Port: 3, Target: "A.DB.TEST.", TTL: 30})
				s.SetA("a.db.test", 30, "127.0.0.1")
				s.SetA("b.db.test", 30, "127.0.0.2")
				s.SetAAAA("c.db.test", 30, "::1")
			},
			want: []string{"a.db.test@127.0.0.1:3 10/40", "c.db.test@[::1]:2 10/60", "b.db.test@127.0.0.2:1 20/5"},
		},
		{
			name: "target without addresses left out",
			setup: func(s *dnstest.Server) {
				simple(s, svc, 30)
				s.Delete("pg2.db.test")
			},
			want: []string{"pg1.db.test@127.0.0.1:5432 0/10"},
		},
		{
			name: "port 0 and duplicate records ignored",
			setup: func(s *dnstest.Server) {
				s.SetSRV(svc,
					dnstest.SRV{Port: 0, Target: "pg1.db.test", TTL: 30},
					dnstest.SRV{Priority: 5, Port: 1, Target: "pg1.db.test", TTL: 30},
					dnstest.SRV{Priority: 1, Port: 1, Target: "pg1.db.test", TTL: 30})
				s.SetA("pg1.db.test", 30, "127.0.0.1")
			},
			want: []string{"pg1.db.test@127.0.0.1:1 1/0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dnstest.NewServer(t)
			s.SetAdditional(tt.additional)
			tt.setup(s)
			r, err := srv.New(svc, fast(s.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Resolve(context.Background())
			if err != nil {
				t.Fatalf("Resolve() error = %v", err)
			}
			if !slices.Equal(keys(got), tt.want) {
				t.Errorf("Resolve() = %q, want %q", keys(got), tt.want)
			}
			for _, b := range got {
				if err := b.Validate(); err != nil {
					t.Errorf("backend %v: %v", b, err)
				}
				if strings.HasSuffix(b.Host, ".") {
					t.Errorf("backend host %q ends with a dot", b.Host)
				}
			}
			asked := s.QueriesFor("pg1.db.test", dns.TypeA)
			if tt.additional && asked != 0 {
				t.Errorf("asked for A of pg1 %d times, want 0 (addresses were in the additional section)", asked)
			}
		})
	}
}

func TestSRVResolveFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *dnstest.Server)
		want  error
	}{
		{"no such name", func(s *dnstest.Server) {}, srv.ErrNoSuchName},
		{"no SRV records", func(s *dnstest.Server) { s.SetSRV(svc) }, srv.ErrNoRecords},
		{"dot target", func(s *dnstest.Server) {
			s.SetSRV(svc, dnstest.SRV{Target: ".", TTL: 30})
		}, srv.ErrUnavailable},
		{"no addresses", func(s *dnstest.Server) {
			s.SetSRV(svc, dnstest.SRV{Target: "pg1.db.test", Port: 1, TTL: 30})
		}, srv.ErrNoAddresses},
		{"servfail", func(s *dnstest.Server) { s.SetFault(dnstest.FaultServFail) }, srv.ErrServerFailure},
		{"refused", func(s *dnstest.Server) { s.SetFault(dnstest.FaultRefused) }, srv.ErrRefused},
		{"timeout", func(s *dnstest.Server) { s.SetFault(dnstest.FaultTimeout) }, srv.ErrTimeout},
		{"garbage", func(s *dnstest.Server) { s.SetFault(dnstest.FaultGarbage) }, srv.ErrMalformed},
		{"target lookup fails", func(s *dnstest.Server) {
			s.SetAdditional(false)
			simple(s, svc, 30)
			s.SetFaultFor("pg1.db.test", dnstest.FaultServFail)
			s.SetFaultFor("pg2.db.test", dnstest.FaultRefused)
		}, srv.ErrServerFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dnstest.NewServer(t)
			tt.setup(s)
			cfg := fast(s.Addr())
			cfg.QueryTimeout = 100 * time.Millisecond
			r, err := srv.New(svc, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Resolve(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Resolve() = %v, %v; want error %v", got, err, tt.want)
			}
			if got != nil {
				t.Errorf("Resolve() returned backends %v with error", got)
			}
			if !strings.Contains(err.Error(), svc) && !strings.Contains(err.Error(), "pg1.db.test") {
				t.Errorf("error %q does not name what was looked up", err)
			}
		})
	}
}

func TestSRVUnreachableServer(t *testing.T) {
	dead := deadPort(t)
	r, err := srv.New(svc, fast(dead))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Resolve(context.Background())
	var le *srv.LookupError
	if !errors.As(err, &le) || len(le.Errs) != 1 || le.Errs[0].Server != dead {
		t.Fatalf("Resolve() error = %v, want a *LookupError naming %s", err, dead)
	}
	if !errors.Is(err, srv.ErrUnreachable) && !errors.Is(err, srv.ErrTimeout) {
		t.Errorf("Resolve() error = %v, want ErrUnreachable or ErrTimeout", err)
	}
}

func TestSRVRunPublishesChanges(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, svc, 0)
	rec, _ := start(t, svc, fast(s.Addr()))
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")

	// An address change under the same name.
	s.SetA("pg2.db.test", 0, "127.0.0.3")
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.3:5432 0/20")

	// A weight change.
	s.SetSRV(svc,
		dnstest.SRV{Weight: 10, Port: 5432, Target: "pg1.db.test"},
		dnstest.SRV{Weight: 30, Port: 5432, Target: "pg2.db.test"})
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.3:5432 0/30")

	// A new target, asked for because the additional section is off.
	s.SetAdditional(false)
	s.SetAAAA("pg3.db.test", 0, "::1")
	s.SetSRV(svc,
		dnstest.SRV{Weight: 10, Port: 5432, Target: "pg1.db.test"},
		dnstest.SRV{Weight: 30, Port: 5432, Target: "pg2.db.test"},
		dnstest.SRV{Priority: 1, Port: 6432, Target: "pg3.db.test"})
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.3:5432 0/30", "pg3.db.test@[::1]:6432 1/0")

	// Nothing is published twice, and no update repeats the one before.
	ups, _ := rec.snapshot()
	for i := 1; i < len(ups); i++ {
		if slices.Equal(keys(ups[i]), keys(ups[i-1])) {
			t.Errorf("update %d repeats update %d: %v", i, i-1, keys(ups[i]))
		}
	}
	if len(ups) != 4 {
		t.Errorf("got %d updates, want 4: %v", len(ups), ups)
	}
}

func TestSRVRefreshClamped(t *testing.T) {
	const minR, maxR = 2 * time.Second, 20 * time.Second
	tests := []struct {
		ttl    uint32
		lo, hi time.Duration
	}{
		{0, minR, minR + minR/10},
		{1, minR, minR + minR/10},
		{5, 5 * time.Second, 5500 * time.Millisecond},
		{3600, maxR, maxR + maxR/10},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("TTL %d", tt.ttl), func(t *testing.T) {
			s := dnstest.NewServer(t)
			simple(s, svc, 600)
			s.SetSRV(svc, dnstest.SRV{Port: 5432, Target: "pg1.db.test", TTL: tt.ttl})
			cfg := fast(s.Addr())
			cfg.MinRefresh, cfg.MaxRefresh = minR, maxR
			rec, _ := start(t, svc, cfg)
			rec.waitFor(t, 5*time.Second, "first update", func() bool { return rec.count(srv.EventUpdate) == 1 })
			_, evs := rec.snapshot()
			next := evs[len(evs)-1].Next
			if next < tt.lo || next > tt.hi {
				t.Errorf("with TTL %ds, next lookup in %v, want %v to %v", tt.ttl, next, tt.lo, tt.hi)
			}
		})
	}
}

func TestSRVZeroTTLDoesNotStorm(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, svc, 0)
	cfg := fast(s.Addr())
	cfg.MinRefresh = 50 * time.Millisecond
	begin := time.Now()
	rec, stop := start(t, svc, cfg)
	const lookups = 6
	rec.waitFor(t, 5*time.Second, "lookups", func() bool {
		return rec.count(srv.EventUnchanged) >= lookups-1
	})
	stop()
	elapsed := time.Since(begin)
	if n := s.QueriesFor(svc, dns.TypeSRV); elapsed < time.Duration(n-1)*cfg.MinRefresh {
		t.Errorf("%d SRV queries in %v with TTL 0: more than one per MinRefresh (%v)", n, elapsed, cfg.MinRefresh)
	}
}

func TestSRVKeepsSetWhenDNSFails(t *testing.T) {
	for _, fault := range []dnstest.Fault{dnstest.FaultServFail, dnstest.FaultRefused, dnstest.FaultTimeout, dnstest.FaultGarbage} {
		t.Run(fault.String(), func(t *testing.T) {
			s := dnstest.NewServer(t)
			simple(s, svc, 0)
			cfg := fast(s.Addr())
			cfg.QueryTimeout = 100 * time.Millisecond
			rec, _ := start(t, svc, cfg)
			want := []string{"pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20"}
			rec.waitSet(t, 5*time.Second, want...)

			// A loaded machine may time out a query before the fault: look
			// only at what follows it.
			_, before := rec.snapshot()
			failedBefore := rec.count(srv.EventLookupFailed)
			s.SetFault(fault)
			rec.waitFor(t, 5*time.Second, "4 failed lookups", func() bool {
				return rec.count(srv.EventLookupFailed) >= failedBefore+4
			})
			ups, evs := rec.snapshot()
			evs = evs[len(before):]
			if len(ups) != 1 {
				t.Errorf("updates: %v, want only the first", ups)
			}
			// Backoff: each wait is drawn between RetryMin and a ceiling
			// that doubles up to RetryMax.
			var waits []time.Duration
			for _, ev := range evs {
				if ev.Kind == srv.EventLookupFailed {
					waits = append(waits, ev.Next)
				}
			}
			ceils := []time.Duration{2 * cfg.RetryMin, 4 * cfg.RetryMin, min(8*cfg.RetryMin, cfg.RetryMax), cfg.RetryMax}
			for i, ceil := range ceils {
				if waits[i] < cfg.RetryMin || waits[i] > ceil {
					t.Errorf("wait after failure %d = %v, want between %v and %v", i+1, waits[i], cfg.RetryMin, ceil)
				}
			}

			s.SetFault(dnstest.FaultNone)
			s.SetA("pg1.db.test", 0, "127.0.0.9")
			rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.9:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")
		})
	}
}

func TestSRVEmptyAnswerTwiceEmptiesSet(t *testing.T) {
	tests := []struct {
		name  string
		empty func(s *dnstest.Server)
		want  error
	}{
		{"NXDOMAIN", func(s *dnstest.Server) { s.Delete(svc) }, srv.ErrNoSuchName},
		{"NODATA", func(s *dnstest.Server) { s.SetSRV(svc) }, srv.ErrNoRecords},
		{"no addresses", func(s *dnstest.Server) { s.Delete("pg1.db.test"); s.Delete("pg2.db.test") }, srv.ErrNoAddresses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dnstest.NewServer(t)
			s.SetNegativeTTL(0)
			simple(s, svc, 0)
			rec, _ := start(t, svc, fast(s.Addr()))
			rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")

			tt.empty(s)
			rec.waitSet(t, 5*time.Second)
			_, evs := rec.snapshot()
			// The set, one EmptyPending, then the empty set.
			var kinds []srv.EventKind
			for _, ev := range evs {
				if ev.Kind == srv.EventUpdate || ev.Kind == srv.EventEmptyPending {
					kinds = append(kinds, ev.Kind)
				}
			}
			wantKinds := []srv.EventKind{srv.EventUpdate, srv.EventEmptyPending, srv.EventUpdate}
			if !slices.Equal(kinds, wantKinds) {
				t.Errorf("events = %v, want %v", kinds, wantKinds)
			}
			for _, ev := range slices.Backward(evs) {
				if ev.Kind == srv.EventUpdate {
					if !errors.Is(ev.Err, tt.want) {
						t.Errorf("empty update's Err = %v, want %v", ev.Err, tt.want)
					}
					break
				}
			}
		})
	}
}

func TestSRVEmptyAnswerOnceKeepsSet(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, svc, 0)
	rec, _ := start(t, svc, fast(s.Addr()))
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")

	// Flap: NXDOMAIN for exactly one answer, then the records are back.
	// The SRV answer is also the moment the observer runs: restore the
	// records from the observer, before the next lookup can start.
	restored := make(chan struct{})
	rec.mu.Lock()
	rec.onEvent = func(ev srv.Event) {
		if ev.Kind == srv.EventEmptyPending {
			simple(s, svc, 0)
			close(restored)
		}
	}
	rec.mu.Unlock()
	s.Delete(svc)
	<-restored
	before := rec.count(srv.EventUnchanged)
	rec.waitFor(t, 5*time.Second, "two more lookups", func() bool { return rec.count(srv.EventUnchanged) >= before+2 })
	if ups, _ := rec.snapshot(); len(ups) != 1 {
		t.Errorf("updates = %v, want only the first", ups)
	}
}

func TestSRVDotTargetEmptiesAtOnce(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, svc, 0)
	rec, _ := start(t, svc, fast(s.Addr()))
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")
	s.SetSRV(svc, dnstest.SRV{Target: "."})
	rec.waitSet(t, 5*time.Second)
	if n := rec.count(srv.EventEmptyPending); n != 0 {
		t.Errorf("%d EmptyPending events for a \".\" target, want 0", n)
	}
	_, evs := rec.snapshot()
	for _, ev := range slices.Backward(evs) {
		if ev.Kind == srv.EventUpdate {
			if !errors.Is(ev.Err, srv.ErrUnavailable) {
				t.Errorf("empty update's Err = %v, want ErrUnavailable", ev.Err)
			}
			break
		}
	}
}

func TestSRVFirstAnswerEmptyIsPublished(t *testing.T) {
	s := dnstest.NewServer(t)
	rec, _ := start(t, svc, fast(s.Addr()))
	rec.waitFor(t, 5*time.Second, "an empty first update", func() bool {
		set, ok := rec.last()
		return ok && len(set) == 0
	})
	simple(s, svc, 0)
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")
}

func TestSRVTargetLookupFailureKeepsAddresses(t *testing.T) {
	s := dnstest.NewServer(t)
	s.SetAdditional(false)
	simple(s, svc, 0)
	rec, _ := start(t, svc, fast(s.Addr()))
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20")

	// pg1's address queries fail; a weight change must still come through
	// with pg1 at the address known from before.
	s.SetFaultFor("pg1.db.test", dnstest.FaultServFail)
	s.SetSRV(svc,
		dnstest.SRV{Weight: 11, Port: 5432, Target: "pg1.db.test"},
		dnstest.SRV{Weight: 20, Port: 5432, Target: "pg2.db.test"})
	rec.waitSet(t, 5*time.Second, "pg1.db.test@127.0.0.1:5432 0/11", "pg2.db.test@127.0.0.2:5432 0/20")
	if n := rec.count(srv.EventQueryFailed); n == 0 {
		t.Errorf("no QueryFailed events while pg1's lookups fail")
	}
}

func TestSRVTruncatedAnswerRetriedOverTCP(t *testing.T) {
	t.Run("forced", func(t *testing.T) {
		s := dnstest.NewServer(t)
		simple(s, svc, 30)
		s.SetFault(dnstest.FaultTruncate)
		r, err := srv.New(svc, fast(s.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Resolve(context.Background())
		if err != nil || len(got) != 2 {
			t.Fatalf("Resolve() = %v, %v; want 2 backends", got, err)
		}
		if s.TCPQueries() == 0 {
			t.Errorf("no question came over TCP")
		}
	})
	t.Run("too big for UDP", func(t *testing.T) {
		s := dnstest.NewServer(t)
		var recs []dnstest.SRV
		for i := range 100 {
			recs = append(recs, dnstest.SRV{Port: uint16(1000 + i), Target: "a-rather-long-target-name.db.test", TTL: 30})
		}
		s.SetSRV(svc, recs...)
		s.SetA("a-rather-long-target-name.db.test", 30, "127.0.0.1")
		cfg := fast(s.Addr())
		cfg.UDPSize = 512
		var truncated int
		cfg.Observer = srv.ObserverFunc(func(ev srv.Event) {
			if ev.Kind == srv.EventTruncated {
				truncated++
			}
		})
		r, err := srv.New(svc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Resolve(context.Background())
		if err != nil || len(got) != 100 {
			t.Fatalf("Resolve() = %d backends, %v; want 100", len(got), err)
		}
		if s.TCPQueries() == 0 || truncated == 0 {
			t.Errorf("TCP queries = %d, truncated events = %d; want both > 0", s.TCPQueries(), truncated)
		}
	})
}

func TestSRVSeveralServers(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%v", parallel), func(t *testing.T) {
			dead := dnstest.NewServer(t)
			dead.SetFault(dnstest.FaultTimeout)
			good := dnstest.NewServer(t)
			simple(good, svc, 30)
			cfg := fast(dead.Addr(), good.Addr())
			cfg.Parallel = parallel
			cfg.QueryTimeout = 500 * time.Millisecond
			r, err := srv.New(svc, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				begin := time.Now()
				got, err := r.Resolve(context.Background())
				took := time.Since(begin)
				if err != nil || len(got) != 2 {
					t.Fatalf("Resolve() #%d = %v, %v; want 2 backends", i, got, err)
				}
				// In turn, only the first lookup waits for the dead server.
				if (parallel || i > 0) && took > cfg.QueryTimeout/2 {
					t.Errorf("Resolve() #%d took %v: waited for the dead server", i, took)
				}
			}
			// In turn, the dead server is asked once and then passed over.
			// In parallel it is asked each time, unless the good answer
			// came before the question was sent.
			if n := dead.Queries(); !parallel && n != 1 {
				t.Errorf("dead server asked %d times, want 1", n)
			}
			checkNoResolverGoroutines(t)
		})
	}
}

func TestSRVCaps(t *testing.T) {
	s := dnstest.NewServer(t)
	var recs []dnstest.SRV
	for i := range 50 {
		recs = append(recs, dnstest.SRV{Priority: uint16(i % 3), Port: uint16(1000 + i), Target: fmt.Sprintf("t%d.db.test", i), TTL: 30})
		s.SetA(fmt.Sprintf("t%d.db.test", i), 30, "127.0.0.1", "127.0.0.2")
	}
	s.SetSRV(svc, recs...)
	cfg := fast(s.Addr())
	cfg.MaxBackends = 7
	capped := 0
	cfg.Observer = srv.ObserverFunc(func(ev srv.Event) {
		if ev.Kind == srv.EventCapped {
			capped++
		}
	})
	r, err := srv.New(svc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || capped == 0 {
		t.Errorf("got %d backends and %d capped events, want 7 and at least 1", len(got), capped)
	}
	// The lowest priorities are kept, and the choice is stable.
	again, _ := r.Resolve(context.Background())
	if !slices.Equal(keys(got), keys(again)) {
		t.Errorf("capped set changed between lookups: %v, then %v", keys(got), keys(again))
	}
	for _, b := range got {
		if b.Priority != 0 {
			t.Errorf("kept %v of priority %d, want priority 0 only", b, b.Priority)
		}
	}
}

func TestSRVRunStopsPromptly(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%v", parallel), func(t *testing.T) {
			s1, s2 := dnstest.NewServer(t), dnstest.NewServer(t)
			s1.SetFault(dnstest.FaultTimeout)
			s2.SetFault(dnstest.FaultTimeout)
			cfg := fast(s1.Addr(), s2.Addr())
			cfg.Parallel = parallel
			cfg.QueryTimeout = time.Minute
			_, stop := start(t, svc, cfg)
			deadline := time.Now().Add(5 * time.Second)
			for s1.Queries() == 0 || (parallel && s2.Queries() == 0) {
				if time.Now().After(deadline) {
					t.Fatal("no query within 5s")
				}
				time.Sleep(5 * time.Millisecond)
			}
			begin := time.Now()
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run() = %v, want context.Canceled", err)
			}
			if took := time.Since(begin); took > time.Second {
				t.Errorf("Run took %v to return after cancel, in the middle of a query", took)
			}
			checkNoResolverGoroutines(t)
		})
	}
}

func TestSRVLogs(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, svc, 0)
	var buf syncBuffer
	cfg := fast(s.Addr())
	cfg.Observer = srv.LogEvents(slog.New(slog.NewTextHandler(&buf, nil)))
	rec, stop := start(t, svc, cfg)
	rec.waitFor(t, 5*time.Second, "first update", func() bool { return rec.count(srv.EventUpdate) == 1 })
	s.SetFault(dnstest.FaultServFail)
	rec.waitFor(t, 5*time.Second, "a failed lookup", func() bool { return rec.count(srv.EventLookupFailed) >= 1 })
	stop()
	out := buf.String()
	for _, want := range []string{"backend set changed", "pg1.db.test@127.0.0.1:5432", "lookup failed", "SERVFAIL", "level=WARN"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not contain %q:\n%s", want, out)
		}
	}
}

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search db.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		srv         string
		cfg         srv.Config
		wantErr     error
		wantServers []string
	}{
		{"servers with and without port", svc, srv.Config{Servers: []string{"127.0.0.1", "127.0.0.2:5353", "[::1]:53", "::2", "[::3]"}}, nil,
			[]string{"127.0.0.1:53", "127.0.0.2:5353", "[::1]:53", "[::2]:53", "[::3]:53"}},
		{"from resolv.conf", svc, srv.Config{ResolvConf: conf}, nil, []string{"127.0.0.1:53", "[::1]:53"}},
		{"duplicates dropped", svc, srv.Config{Servers: []string{"127.0.0.1", "127.0.0.1:53"}}, nil, []string{"127.0.0.1:53"}},
		{"missing resolv.conf", svc, srv.Config{ResolvConf: filepath.Join(dir, "nope")}, srv.ErrNoServers, nil},
		{"resolv.conf without servers", svc, srv.Config{ResolvConf: empty}, srv.ErrNoServers, nil},
		{"host name as server", svc, srv.Config{Servers: []string{"ns.example"}}, srv.ErrBadServer, nil},
		{"port 0", svc, srv.Config{Servers: []string{"127.0.0.1:0"}}, srv.ErrBadServer, nil},
		{"empty name", "", srv.Config{Servers: []string{"127.0.0.1"}}, srv.ErrBadName, nil},
		{"root name", ".", srv.Config{Servers: []string{"127.0.0.1"}}, srv.ErrBadName, nil},
		{"bad name", "a..b", srv.Config{Servers: []string{"127.0.0.1"}}, srv.ErrBadName, nil},
		{"negative timeout", svc, srv.Config{Servers: []string{"127.0.0.1"}, QueryTimeout: -1}, srv.ErrBadConfig, nil},
		{"min above max", svc, srv.Config{Servers: []string{"127.0.0.1"}, MinRefresh: time.Hour}, srv.ErrBadConfig, nil},
		{"retry min above max", svc, srv.Config{Servers: []string{"127.0.0.1"}, RetryMin: time.Hour}, srv.ErrBadConfig, nil},
		{"small UDP size", svc, srv.Config{Servers: []string{"127.0.0.1"}, UDPSize: 100}, srv.ErrBadConfig, nil},
		{"negative cap", svc, srv.Config{Servers: []string{"127.0.0.1"}, MaxBackends: -1}, srv.ErrBadConfig, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := srv.New(tt.srv, tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New(%q, %+v) error = %v, want %v", tt.srv, tt.cfg, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := r.Servers(); !slices.Equal(got, tt.wantServers) {
				t.Errorf("Servers() = %q, want %q", got, tt.wantServers)
			}
			if got := r.Name(); got != strings.ToLower(svc)+"." {
				t.Errorf("Name() = %q, want %q", got, svc+".")
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSRVReportsEachFailure checks that Run reports each kind of failed or
// empty lookup to its receiver, naming the SRV name and the name server,
// and that a failure (a CNAME loop included) keeps the last set.
func TestSRVReportsEachFailure(t *testing.T) {
	tests := []struct {
		name    string
		fail    func(s *dnstest.Server)
		kind    error
		text    string
		empties bool // the set empties once the answer is confirmed
	}{
		{"SERVFAIL", func(s *dnstest.Server) { s.SetFault(dnstest.FaultServFail) }, srv.ErrServerFailure, "SERVFAIL", false},
		{"REFUSED", func(s *dnstest.Server) { s.SetFault(dnstest.FaultRefused) }, srv.ErrRefused, "REFUSED", false},
		{"timeout", func(s *dnstest.Server) { s.SetFault(dnstest.FaultTimeout) }, srv.ErrTimeout, "no answer in time", false},
		{"garbage", func(s *dnstest.Server) { s.SetFault(dnstest.FaultGarbage) }, srv.ErrMalformed, "malformed answer", false},
		{"CNAME loop", func(s *dnstest.Server) {
			s.SetCNAME(svc, 30, "loop.db.test")
			s.SetCNAME("loop.db.test", 30, svc)
		}, srv.ErrMalformed, "CNAME loop", false},
		{"NXDOMAIN", func(s *dnstest.Server) { s.Delete(svc) }, srv.ErrNoSuchName, "NXDOMAIN", true},
		{"empty answer", func(s *dnstest.Server) { s.SetSRV(svc) }, srv.ErrNoRecords, "no SRV records", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dnstest.NewServer(t)
			simple(s, svc, 0)
			cfg := fast(s.Addr())
			cfg.QueryTimeout = 100 * time.Millisecond
			rec, _ := start(t, svc, cfg)
			want := []string{"pg1.db.test@127.0.0.1:5432 0/10", "pg2.db.test@127.0.0.2:5432 0/20"}
			rec.waitSet(t, 5*time.Second, want...)
			rec.waitFor(t, 5*time.Second, "the set confirmed", func() bool {
				err, ok := rec.lastReport()
				return ok && err == nil
			})

			tt.fail(s)
			var got error
			rec.waitFor(t, 5*time.Second, "a failure reported", func() bool {
				err, _ := rec.lastReport()
				got = err
				return errors.Is(err, tt.kind)
			})
			for _, part := range []string{"SRV lookup of " + svc + " at " + s.Addr(), tt.text} {
				if !strings.Contains(got.Error(), part) {
					t.Errorf("report %q does not contain %q", got, part)
				}
			}
			if set, _ := rec.last(); !slices.Equal(keys(set), want) {
				t.Errorf("after the first failure the set is %v, want it kept", keys(set))
			}
			if !tt.empties {
				failed := rec.count(srv.EventLookupFailed)
				rec.waitFor(t, 5*time.Second, "3 more failed lookups", func() bool {
					return rec.count(srv.EventLookupFailed) >= failed+3
				})
				if ups, _ := rec.snapshot(); len(ups) != 1 {
					t.Errorf("updates after the failures: %v, want only the first", ups)
				}
				return
			}
			rec.waitSet(t, 5*time.Second) // the next answer confirms: empty
			if err, _ := rec.lastReport(); !errors.Is(err, tt.kind) {
				t.Errorf("after the empty set, report %v, want %v", err, tt.kind)
			}
		})
	}
}

func TestSRVCNAMEChains(t *testing.T) {
	s := dnstest.NewServer(t)
	simple(s, "real.db.test", 30)
	s.SetCNAME(svc, 30, "alias.db.test")
	s.SetCNAME("alias.db.test", 30, "real.db.test")
	r, err := srv.New(svc, fast(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(t.Context())
	if err != nil || len(got) != 2 {
		t.Fatalf("through two CNAMEs: %v, %v; want 2 backends", got, err)
	}
	// A chain longer than the resolver follows fails, as a loop does.
	prev := "real.db.test"
	for i := range 10 {
		name := fmt.Sprintf("hop%d.db.test", i)
		s.SetCNAME(name, 30, prev)
		prev = name
	}
	s.SetCNAME(svc, 30, prev)
	if _, err := r.Resolve(t.Context()); !errors.Is(err, srv.ErrMalformed) || !strings.Contains(err.Error(), "CNAME chain") {
		t.Errorf("through 11 CNAMEs: %v, want a malformed answer naming the chain", err)
	}
}
