//go:build unix

package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo runs "qorb demo -no-tui" in-process and checks its summary:
// every backend served queries, the stopped one none after it stopped,
// the added one some, and the application saw no error.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 6 seconds")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	code := run(ctx, []string{"demo", "-no-tui", "-duration", "6s", "-workers", "16"}, &out, &out)
	t.Logf("output:\n%s", out.String())
	if code != 0 {
		t.Fatalf("qorb demo exited with %d, want 0", code)
	}

	var backends []map[string]string
	var totals map[string]string
	for line := range strings.Lines(out.String()) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "summary: ")
		if !ok {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		switch {
		case f["backend"] != "":
			backends = append(backends, f)
		case f["app_errors"] != "":
			totals = f
		}
	}
	if totals == nil || len(backends) != 4 {
		t.Fatalf("summary has %d backend lines and totals %v; want 4 and the totals", len(backends), totals)
	}
	if totals["app_errors"] != "0" {
		t.Errorf("app_errors = %s, want 0", totals["app_errors"])
	}
	num := func(f map[string]string, k string) int {
		n, err := strconv.Atoi(f[k])
		if err != nil {
			t.Errorf("%s: %s=%q is not a number", f["backend"], k, f[k])
		}
		return n
	}
	roles := map[string]int{}
	for _, b := range backends {
		roles[b["part"]]++
		if num(b, "queries") == 0 {
			t.Errorf("backend %s (%s) served no queries", b["backend"], b["part"])
		}
		if n := num(b, "queries_after_stop"); n != 0 {
			t.Errorf("backend %s (%s) served %d queries that started after it stopped", b["backend"], b["part"], n)
		}
		if b["part"] == "stopped" && b["health"] != "offline" {
			t.Errorf("stopped backend %s is %s at the end, want offline", b["backend"], b["health"])
		}
	}
	if roles["original"] != 2 || roles["stopped"] != 1 || roles["added"] != 1 {
		t.Errorf("backend roles %v, want 2 original, 1 stopped, 1 added", roles)
	}
}

// TestDemoDSN points the demo's workload at the machine's PostgreSQL and
// MariaDB servers (scripts/setup starts them) with -dsn: every query is
// answered and the summary names the server's port.
func TestDemoDSN(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local database servers")
	}
	for _, tt := range []struct{ dsn, port string }{
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_conns=4", "5432"},
		{"mysql://root@127.0.0.1:3306/test?pool_max_conns=4", "3306"},
	} {
		t.Run(tt.port, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			code := run(ctx, []string{"demo", "-no-tui", "-duration", "1s", "-workers", "4", "-dsn", tt.dsn}, &out, &out)
			if code != 0 {
				t.Fatalf("qorb demo -dsn exited with %d, want 0; output:\n%s", code, out.String())
			}
			if !strings.Contains(out.String(), "backend="+tt.port+" ") || !strings.Contains(out.String(), "app_errors=0") {
				t.Errorf("summary does not show queries served by port %s with no errors:\n%s", tt.port, out.String())
			}
		})
	}
}
