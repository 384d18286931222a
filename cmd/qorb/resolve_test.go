package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/internal/dnstest"
)

const svc = "_postgresql._tcp.db.test"

func setup(t *testing.T) *dnstest.Server {
	t.Helper()
	s := dnstest.NewServer(t)
	s.SetSRV(svc,
		dnstest.SRV{Priority: 0, Weight: 10, Port: 5432, Target: "pg1.db.test", TTL: 0},
		dnstest.SRV{Priority: 1, Weight: 20, Port: 5433, Target: "pg2.db.test", TTL: 0})
	s.SetA("pg1.db.test", 0, "127.0.0.1")
	s.SetAAAA("pg2.db.test", 0, "::1")
	return s
}

func TestResolveOnce(t *testing.T) {
	s := setup(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"resolve", "-server", s.Addr(), svc}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("qorb resolve = %d, want 0; stderr:\n%s", code, stderr.String())
	}
	want := [][]string{
		{"TARGET", "ADDRESS", "PORT", "PRIORITY", "WEIGHT", "TTL"},
		{"pg1.db.test", "127.0.0.1", "5432", "0", "10", "0s"},
		{"pg2.db.test", "::1", "5433", "1", "20", "0s"},
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("output has %d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	for i, line := range lines {
		if got := strings.Fields(line); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d = %q, want fields %q", i, line, want[i])
		}
	}
}

func TestResolveFails(t *testing.T) {
	s := dnstest.NewServer(t)
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"no such name", []string{"resolve", "-server", s.Addr(), "_x._tcp.nowhere.test"}, 1, "_x._tcp.nowhere.test. does not resolve: resolver: SRV lookup of _x._tcp.nowhere.test at " + s.Addr() + ": NXDOMAIN"},
		{"no name", []string{"resolve", "-server", s.Addr()}, 2, "want exactly one SRV name"},
		{"bad server", []string{"resolve", "-server", "ns.example:53", svc}, 2, "bad name server"},
		{"bad flag", []string{"resolve", "-bogus", svc}, 2, "flag provided but not defined"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"no command", nil, 2, "usage: qorb <command>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.inStderr) {
				t.Errorf("qorb %q = %d, stderr %q; want %d and stderr containing %q", tt.args, code, stderr.String(), tt.code, tt.inStderr)
			}
		})
	}
}

func TestResolveWatch(t *testing.T) {
	s := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"resolve", "-watch", "-server", s.Addr(), svc}, &stdout, &stderr) }()

	waitOutput(t, &stdout, "# ", "2 backends", "127.0.0.1")
	s.SetA("pg1.db.test", 0, "127.0.0.5")
	waitOutput(t, &stdout, "127.0.0.5")
	s.Delete(svc)
	waitOutput(t, &stdout, "no backends: resolver: SRV lookup of", "NXDOMAIN")
	if !strings.Contains(stderr.String(), "keeping the last set until the next answer says so too") {
		t.Errorf("stderr does not tell that the empty answer was held back once:\n%s", stderr.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("qorb resolve -watch = %d after interrupt, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("qorb resolve -watch did not stop within 5s of interrupt")
	}
}

// waitOutput waits until every one of wants appears in b, polling with a
// deadline.
func waitOutput(t *testing.T, b *syncBuffer, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out := b.String()
		ok := true
		for _, w := range wants {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("output does not contain %q after 10s:\n%s", wants, out)
		}
		<-tick.C
	}
}

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
