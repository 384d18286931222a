//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb/statshttp"
)

var (
	demoStatsLine = regexp.MustCompile(`(?m)^stats: qorb top (http://127\.0\.0\.1:\d+/debug/qorb) `)
	demoDNSLine   = regexp.MustCompile(`(?m)^DNS: +qorb resolve -server (127\.0\.0\.1:\d+) _mysql\._tcp\.demo\.qorb\.test$`)
)

// TestDemo runs "qorb demo -no-tui" in-process and checks that the stats
// page and DNS server it prints answer while it runs, and its summary:
// every backend served queries, the stopped one none after it stopped,
// the added one some, and the application saw no error.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 6 seconds")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "-no-tui", "-duration", "6s", "-workers", "16"}, &out, &out) }()

	// While it runs, its stats page and DNS server answer, as the lines
	// it printed say.
	var statsURL, dnsAddr string
	deadline := time.Now().Add(20 * time.Second)
	for statsURL == "" || dnsAddr == "" {
		if m := demoStatsLine.FindStringSubmatch(out.String()); m != nil {
			statsURL = m[1]
		}
		if m := demoDNSLine.FindStringSubmatch(out.String()); m != nil {
			dnsAddr = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo printed no stats page and DNS server lines:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(statsURL + "?format=json")
	if err != nil {
		t.Fatalf("stats page the demo printed: %v", err)
	}
	var st statshttp.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st.Backends) != 3 {
		t.Errorf("stats JSON at %s: %d backends, error %v; want the 3 embedded ones", statsURL, len(st.Backends), err)
	}
	var resolved bytes.Buffer
	if code := run(ctx, []string{"resolve", "-server", dnsAddr, "_mysql._tcp." + demoName}, &resolved, &resolved); code != 0 ||
		strings.Count(resolved.String(), "."+demoName) != 3 {
		t.Errorf("qorb resolve -server %s (the printed command) = %d:\n%s\nwant the 3 embedded backends", dnsAddr, code, resolved.String())
	}

	code := <-done
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

// TestDemoUsage checks that "qorb demo -h" says when the demo stops a
// backend and adds one, as its schedule does.
func TestDemoUsage(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"demo", "-h"}, &out, &out); code != 0 {
		t.Fatalf("qorb demo -h exited with %d", code)
	}
	for _, want := range []string{fmt.Sprintf("At %.0f%% of the run the demo stops one backend", demoStopAt*100),
		fmt.Sprintf("at %.0f%% it publishes", demoAddAt*100), "-http ADDR"} {
		if !strings.Contains(strings.Join(strings.Fields(out.String()), " "), want) {
			t.Errorf("qorb demo -h does not say %q:\n%s", want, out.String())
		}
	}
}
