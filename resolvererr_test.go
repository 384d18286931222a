package qorb

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver/srv"
	"github.com/qorb-go/qorb/statshttp"
)

// dnsFailures are the ways a name server can fail a lookup of the SRV name
// name, what the failure wraps and what its text says.
func dnsFailures(name string) []struct {
	kind  string
	fail  func(s *dnstest.Server)
	is    error
	text  string
	empty bool // an answer without backends rather than a failure
} {
	return []struct {
		kind  string
		fail  func(s *dnstest.Server)
		is    error
		text  string
		empty bool
	}{
		{"SERVFAIL", func(s *dnstest.Server) { s.SetFault(dnstest.FaultServFail) }, srv.ErrServerFailure, "SERVFAIL", false},
		{"REFUSED", func(s *dnstest.Server) { s.SetFault(dnstest.FaultRefused) }, srv.ErrRefused, "REFUSED", false},
		{"timeout", func(s *dnstest.Server) { s.SetFault(dnstest.FaultTimeout) }, srv.ErrTimeout, "no answer in time", false},
		{"garbage", func(s *dnstest.Server) { s.SetFault(dnstest.FaultGarbage) }, srv.ErrMalformed, "malformed answer", false},
		{"CNAME loop", func(s *dnstest.Server) {
			s.SetCNAME(name, 0, "loop.db.test")
			s.SetCNAME("loop.db.test", 0, name)
		}, srv.ErrMalformed, "CNAME loop", false},
		{"NXDOMAIN", func(s *dnstest.Server) { s.Delete(name) }, srv.ErrNoSuchName, "NXDOMAIN", true},
		{"empty answer", func(s *dnstest.Server) { s.SetSRV(name) }, srv.ErrNoRecords, "no SRV records", true},
	}
}

const dnsTestName = "_fake._tcp.db.test"

// dnsService serves one backend for dnsTestName with TTL 0, so that the
// resolver asks again every second (its shortest refresh).
func dnsService(t *testing.T) *dnstest.Server {
	s := dnstest.NewServer(t)
	s.SetSRV(dnsTestName, dnstest.SRV{Port: 7000, Target: "b1.db.test", Weight: 1})
	s.SetA("b1.db.test", 0, "127.0.0.1")
	return s
}

// snapshotJSON returns the stats JSON of c as a map.
func snapshotJSON(t *testing.T, c *Connector) map[string]any {
	t.Helper()
	b, err := json.Marshal(statshttp.NewSnapshot(c.Stats(), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDNSFailureBeforeAnySet: when the resolver's first lookup finds no
// backends, a claim fails as soon as it does, not at the claim timeout,
// and its error, Stats and the JSON say why, naming the SRV name and the
// name server.
func TestDNSFailureBeforeAnySet(t *testing.T) {
	for _, tt := range dnsFailures(dnsTestName) {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			s := dnsService(t)
			tt.fail(s)
			start := time.Now()
			c, err := OpenConnector("fake+srv://u@db.test/d?pool_claim_timeout=30s&dns_server=" + s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			db := sql.OpenDB(c)
			defer db.Close()
			err = db.PingContext(t.Context())
			took := time.Since(start)
			// One query timeout (2 s) at most, and then the verdict.
			if took > 10*time.Second {
				t.Errorf("Ping failed after %v, want within one lookup", took)
			}
			want := []string{"no backends", "SRV lookup of " + dnsTestName + " at " + s.Addr(), tt.text}
			if err == nil {
				t.Fatalf("Ping succeeded")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Ping error %q does not contain %q", err, w)
				}
			}
			if !errors.Is(err, pool.ErrNoBackends) || !errors.Is(err, tt.is) {
				t.Errorf("Ping error %v: want it to wrap pool.ErrNoBackends and %v", err, tt.is)
			}
			st := c.Stats()
			if !strings.Contains(st.ResolverError, want[1]) || !st.ResolverFailing || st.Stale {
				t.Errorf("Stats: ResolverError %q, failing %v, stale %v; want the lookup's error, failing, not stale",
					st.ResolverError, st.ResolverFailing, st.Stale)
			}
			if js := snapshotJSON(t, c); !strings.Contains(js["resolver_error"].(string), tt.text) || js["resolver_failing"] != true {
				t.Errorf("JSON resolver_error %q resolver_failing %v, want %q and true", js["resolver_error"], js["resolver_failing"], tt.text)
			}
		})
	}
}

// TestDNSFailureAfterSet: a lookup that fails after a good one shows in
// Stats and the JSON within one refresh and retry, the pool keeps its
// set and serves from it, and claims that fail say the set is stale.
// An answer without backends empties the set when the next one confirms
// it, and claims then fail naming it.
func TestDNSFailureAfterSet(t *testing.T) {
	for _, tt := range dnsFailures(dnsTestName) {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			s := dnsService(t)
			c, err := OpenConnector("fake+srv://u@db.test/d?pool_claim_timeout=30s&dns_server=" + s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			db := sql.OpenDB(c)
			defer db.Close()
			if err := db.PingContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			waitStats(t, c, "a confirmed set", func(st pool.Stats) bool { return !st.ConfirmedAt.IsZero() })

			tt.fail(s)
			start := time.Now()
			st := waitStats(t, c, "the failure in Stats", func(st pool.Stats) bool { return st.ResolverFailing })
			// The next lookup is due within a second (TTL 0); a timeout
			// takes two more.
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("failure showed after %v", took)
			}
			if !strings.Contains(st.ResolverError, "SRV lookup of "+dnsTestName+" at "+s.Addr()) || !strings.Contains(st.ResolverError, tt.text) {
				t.Errorf("ResolverError %q, want it to name the SRV name, the server and %q", st.ResolverError, tt.text)
			}
			if !st.Stale || len(st.Backends) != 1 || st.ConfirmedAt.After(st.ResolverErrorAt) {
				t.Errorf("Stats: stale %v, %d backends, confirmed %v after the error at %v: want the set kept, stale",
					st.Stale, len(st.Backends), st.ConfirmedAt, st.ResolverErrorAt)
			}
			js := snapshotJSON(t, c)
			if !strings.Contains(js["resolver_error"].(string), tt.text) || js["stale"] != true || js["resolver_error_at"] == nil {
				t.Errorf("JSON resolver_error %q stale %v resolver_error_at %v", js["resolver_error"], js["stale"], js["resolver_error_at"])
			}
			if !tt.empty {
				// A second failure in a row (a loop included) keeps the set.
				first := st.ResolverErrorAt
				waitStats(t, c, "a second failure", func(st pool.Stats) bool { return st.ResolverErrorAt.After(first) })
				if err := db.PingContext(t.Context()); err != nil {
					t.Errorf("Ping on the stale set: %v", err)
				}
				if st := c.Stats(); len(st.Backends) != 1 || st.Backends[0].Health == pool.HealthRemoved {
					t.Errorf("after two failures: %+v, want the backend kept", st.Backends)
				}
				return
			}
			waitStats(t, c, "the set emptied", func(st pool.Stats) bool { return len(st.Backends) == 0 })
			err = db.PingContext(t.Context())
			if err == nil || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), dnsTestName) {
				t.Errorf("Ping on the empty set: %v, want an error wrapping %v naming %s", err, tt.is, dnsTestName)
			}
		})
	}
}

// waitStats polls c's stats until cond holds, for up to 20 s.
func waitStats(t *testing.T, c *Connector, what string, cond func(pool.Stats) bool) pool.Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := c.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s: %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDNSFailureLogged: a program that only opens a DSN with pool_log=default
// finds DNS failures in its default logger's output, set after sql.Open.
func TestDNSFailureLogged(t *testing.T) {
	s := dnsService(t)
	db, err := sql.Open("qorb", "fake+srv://u:secret@db.test/d?pool_log=default&dns_server="+s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var buf lockedBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.SetFault(dnstest.FaultServFail)
	deadline := time.Now().Add(20 * time.Second)
	want := "SRV lookup of " + dnsTestName + " at " + s.Addr() + ": SERVFAIL"
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q:\n%s", want, buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "pool: resolver lookup failed") {
		t.Errorf("log does not warn of the failed lookup:\n%s", out)
	}
	if strings.Contains(out, "secret") {
		t.Errorf("log shows the password:\n%s", out)
	}
}
