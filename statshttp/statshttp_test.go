package statshttp_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/statshttp"
)

// getStats fetches url with the Accept header accept and returns the
// response and its body.
func getStats(t testing.TB, method, url, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestHandlerJSON shows that the JSON the handler serves is
// Connector.Stats in the documented schema, for known traffic.
func TestHandlerJSON(t *testing.T) {
	tr := newStatsTraffic(t, 30)
	srv := httptest.NewServer(statshttp.Handler(tr.c))
	defer srv.Close()

	before := time.Now()
	resp, body := getStats(t, http.MethodGet, srv.URL+"/?format=json", "")
	want := tr.c.Stats()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET ?format=json = %d %q, want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}

	// Decode into a generic map first: the field names are the schema.
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("JSON does not decode: %v\n%s", err, body)
	}
	for _, k := range []string{"time", "max_slots", "waiting", "paused", "timeouts", "failures", "leaks", "resolver_error", "resolver_error_at",
		"resolver_failing", "stale", "confirmed_at", "backends_changed_at", "backends"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON has no field %q:\n%s", k, body)
		}
	}
	backendKeys := []string{"host", "addr", "priority", "weight", "role", "health", "suspect", "drained", "wanted", "warmth", "outdated", "slots",
		"claims", "waits", "wait_seconds", "failures", "oldest_claim_seconds", "last_error", "last_error_at"}
	for i, b := range raw["backends"].([]any) {
		m := b.(map[string]any)
		for _, k := range backendKeys {
			if _, ok := m[k]; !ok {
				t.Errorf("backends[%d] has no field %q", i, k)
			}
		}
		if len(m) != len(backendKeys) {
			t.Errorf("backends[%d] has %d fields, want the %d documented: %v", i, len(m), len(backendKeys), m)
		}
	}

	var got statshttp.Snapshot
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Time.Before(before.Add(-time.Second)) || got.Time.After(time.Now().Add(time.Second)) || got.Time.Location() != time.UTC {
		t.Errorf("time = %v, want now in UTC", got.Time)
	}
	if got.MaxSlots != 4 || got.MaxSlots != want.MaxSlots {
		t.Errorf("max_slots = %d, want 4 (Stats: %d)", got.MaxSlots, want.MaxSlots)
	}
	if got.Waiting != want.Waiting || got.Timeouts != want.Timeouts || got.Failures != want.Failures || got.ResolverError != want.ResolverError {
		t.Errorf("pool totals = %d waiting, %d timeouts, %d failures, %q; want %d, %d, %d, %q",
			got.Waiting, got.Timeouts, got.Failures, got.ResolverError, want.Waiting, want.Timeouts, want.Failures, want.ResolverError)
	}
	if got.BackendsChangedAt == nil || !got.BackendsChangedAt.Equal(want.BackendsChangedAt) {
		t.Errorf("backends_changed_at = %v, want %v", got.BackendsChangedAt, want.BackendsChangedAt)
	}
	if len(got.Backends) != len(want.Backends) || len(got.Backends) != 4 {
		t.Fatalf("%d backends in JSON, %d in Stats, want 4", len(got.Backends), len(want.Backends))
	}
	var claims uint64
	claimedOut := 0
	for i, g := range got.Backends {
		w := want.Backends[i]
		if g.Host != w.Backend.Host || g.Addr != w.Backend.Addr || g.Priority != w.Backend.Priority || g.Weight != w.Backend.Weight {
			t.Errorf("backends[%d] = %s %s %d %d, want %+v", i, g.Host, g.Addr, g.Priority, g.Weight, w.Backend)
		}
		if g.Drained != w.Drained {
			t.Errorf("backends[%d].drained = %v, want %v", i, g.Drained, w.Drained)
		}
		if g.Role != w.Backend.Role.String() || g.Health != w.Health.String() || g.Suspect != w.Suspect || g.Wanted != w.Wanted {
			t.Errorf("backends[%d] role, health, suspect, wanted = %s %s %v %d; want %s %s %v %d",
				i, g.Role, g.Health, g.Suspect, g.Wanted, w.Backend.Role, w.Health, w.Suspect, w.Wanted)
		}
		ws := statshttp.Slots{w.Connecting, w.Idle, w.Checking, w.Claimed, w.Recycling, w.BackingOff}
		if g.Slots != ws {
			t.Errorf("backends[%d].slots = %+v, want %+v", i, g.Slots, ws)
		}
		if g.Claims != w.Claims || g.Waits != w.Waits || g.WaitSeconds != w.WaitTime.Seconds() || g.Failures != w.Failures {
			t.Errorf("backends[%d] claims, waits, wait_seconds, failures = %d %d %v %d; want %d %d %v %d",
				i, g.Claims, g.Waits, g.WaitSeconds, g.Failures, w.Claims, w.Waits, w.WaitTime.Seconds(), w.Failures)
		}
		// The held claim ages between the two snapshots: JSON's is older.
		if g.OldestClaimSeconds > w.OldestClaim.Seconds() || (w.Claimed > 0) != (g.OldestClaimSeconds > 0) {
			t.Errorf("backends[%d].oldest_claim_seconds = %v, want ≤ %v and > 0 only while claimed", i, g.OldestClaimSeconds, w.OldestClaim.Seconds())
		}
		if g.LastError != w.LastError || (g.LastErrorAt == nil) != w.LastErrorAt.IsZero() ||
			(g.LastErrorAt != nil && !g.LastErrorAt.Equal(w.LastErrorAt)) {
			t.Errorf("backends[%d] last error = %q at %v, want %q at %v", i, g.LastError, g.LastErrorAt, w.LastError, w.LastErrorAt)
		}
		// The known traffic.
		if g.Addr == tr.dead {
			if g.Claims != 0 || g.Failures == 0 || !strings.Contains(g.LastError, "connection refused") || g.Health == "online" {
				t.Errorf("dead backend: %d claims, %d failures, health %s, last error %q; want none, some, not online, connection refused",
					g.Claims, g.Failures, g.Health, g.LastError)
			}
		} else if int(g.Claims) != tr.served[g.Addr] || g.Health != "online" {
			t.Errorf("backend %s: %d claims, health %s; want the %d queries it served, online", g.Addr, g.Claims, g.Health, tr.served[g.Addr])
		}
		claims += g.Claims
		claimedOut += g.Slots.Claimed
	}
	if claims != uint64(tr.queries+1) || claimedOut != 1 {
		t.Errorf("claims in all = %d, claimed now = %d; want %d and 1", claims, claimedOut, tr.queries+1)
	}
	if strings.Contains(body, statsPassword) || strings.Contains(body, "app:") {
		t.Errorf("JSON shows the DSN's credentials:\n%s", body)
	}
}

// TestHandlerNegotiates shows which requests get JSON, which the
// HTML page, and what else the handler answers.
func TestHandlerNegotiates(t *testing.T) {
	tr := newStatsTraffic(t, 3)
	srv := httptest.NewServer(statshttp.Handler(tr.c))
	defer srv.Close()
	tests := []struct {
		name, method, query, accept string
		status                      int
		ctype                       string
	}{
		{"browser", "GET", "", "text/html,application/xhtml+xml,*/*;q=0.8", 200, "text/html; charset=utf-8"},
		{"no accept", "GET", "", "", 200, "text/html; charset=utf-8"},
		{"format=json", "GET", "?format=json", "text/html", 200, "application/json"},
		{"accept json", "GET", "", "application/json", 200, "application/json"},
		{"accept json among others", "GET", "", "text/plain, application/json; q=0.9", 200, "application/json"},
		{"format=html wins over accept", "GET", "?format=html", "application/json", 200, "text/html; charset=utf-8"},
		{"head", "HEAD", "?format=json", "", 200, "application/json"},
		{"post", "POST", "", "", 405, "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := getStats(t, tt.method, srv.URL+"/debug/qorb"+tt.query, tt.accept)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != tt.ctype {
				t.Errorf("%s %q Accept %q = %d %q, want %d %q", tt.method, tt.query, tt.accept,
					resp.StatusCode, resp.Header.Get("Content-Type"), tt.status, tt.ctype)
			}
			if tt.method == "HEAD" && body != "" {
				t.Errorf("HEAD has a body: %q", body)
			}
			if tt.ctype == "application/json" && tt.method == "GET" && !json.Valid([]byte(body)) {
				t.Errorf("body is not JSON: %s", body)
			}
			if strings.HasPrefix(tt.ctype, "text/html") {
				// The SVG namespace is a name, not a resource.
				own := strings.ReplaceAll(body, `"http://www.w3.org/2000/svg"`, "")
				if !strings.Contains(body, "<script>") || strings.Contains(own, "http://") || strings.Contains(own, "https://") {
					t.Errorf("HTML page is not self-contained:\n%s", body)
				}
				if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
					t.Errorf("Content-Security-Policy = %q, want own-origin only", csp)
				}
			}
			if strings.Contains(body, statsPassword) {
				t.Errorf("answer shows the DSN's password:\n%s", body)
			}
		})
	}
}

// TestPageCSP shows that the Content-Security-Policy the page is served
// with allows each of its inline scripts and styles, by their hash, and
// nothing from elsewhere.
func TestPageCSP(t *testing.T) {
	srv := httptest.NewServer(statshttp.Handler(fixedStats{}))
	defer srv.Close()
	resp, body := getStats(t, http.MethodGet, srv.URL, "text/html")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, tag := range []string{"script", "style"} {
		src := tag + "-src"
		inline := regexp.MustCompile(`(?s)<`+tag+`([^>]*)>(.*?)</`+tag+`>`).FindAllStringSubmatch(body, -1)
		if len(inline) == 0 {
			t.Errorf("the page has no <%s>:\n%s", tag, body)
		}
		for _, m := range inline {
			if m[1] != "" {
				t.Errorf("<%s%s>: want an inline element with no attributes", tag, m[1])
			}
			sum := sha256.Sum256([]byte(m[2]))
			hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
			if !strings.Contains(csp, src+" "+hash+";") {
				t.Errorf("Content-Security-Policy = %q, want %s %s, the hash of the page's <%s>", csp, src, hash, tag)
			}
		}
	}
	for _, d := range []string{"default-src 'none'", "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("Content-Security-Policy = %q, want %s", csp, d)
		}
	}
}

// fixedStats is a pool with no backends.
type fixedStats struct{}

func (fixedStats) Stats() pool.Stats { return pool.Stats{MaxSlots: 1} }

// TestPageInChromium loads the HTML page in headless Chromium and
// checks the DOM its script built from the JSON: every backend's address,
// health and claims, and the pool's totals. It fails, not skips, when
// Chromium is missing (scripts/setup installs it), except with -short.
func TestPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if testing.Short() {
			t.Skip("chromium not installed (scripts/setup installs it)")
		}
		t.Fatalf("chromium not installed: run scripts/setup (%v)", err)
	}
	tr := newStatsTraffic(t, 30)
	mux := http.NewServeMux()
	mux.Handle("/debug/qorb", statshttp.Handler(tr.c))
	srv := httptest.NewServer(mux) // on 127.0.0.1
	defer srv.Close()
	want := tr.c.Stats()

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--disable-quic", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=3000", "--dump-dom", srv.URL+"/debug/qorb")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	dom := string(out)

	if !regexp.MustCompile(`<body data-updated="[0-9T:.-]+Z"`).MatchString(dom) {
		t.Fatalf("the page's script did not render a snapshot; DOM:\n%s", dom)
	}
	if m := regexp.MustCompile(`<small id="status"[^>]*>cannot fetch stats[^<]*`).FindString(dom); m != "" {
		t.Errorf("the page's last fetch failed: %s", m)
	}
	cell := regexp.MustCompile(`<td(?: class="[^"]*")?((?: data-[a-z]+="[^"]*")*) data-k="([^"]+)">(.*?)</td>`)
	for _, w := range want.Backends {
		addr := regexp.QuoteMeta(w.Backend.Addr)
		row := regexp.MustCompile(`<tr class="main [a-z]+" data-addr="` + addr + `">(.*?)</tr>`).FindStringSubmatch(dom)
		detail := regexp.MustCompile(`<tr class="detail [a-z]+" data-addr="` + addr + `">(.*?)</tr>`).FindStringSubmatch(dom)
		if row == nil || detail == nil {
			t.Errorf("no row or detail row for backend %s; DOM:\n%s", w.Backend.Addr, dom)
			continue
		}
		cells, attrs := map[string]string{}, map[string]string{}
		for _, m := range cell.FindAllStringSubmatch(row[1], -1) {
			cells[m[2]], attrs[m[2]] = m[3], m[1]
		}
		// backend, role, health, slots, claims, claims/s, wait, oldest, failures
		if len(cells) != 9 {
			t.Errorf("row of %s has %d cells, want 9: %q", w.Backend.Addr, len(cells), cells)
			continue
		}
		wantCells := map[string]string{
			"backend": w.Backend.Addr, "role": w.Backend.Role.String(),
			"claims": strconv.FormatUint(w.Claims, 10), "failures": strconv.FormatUint(w.Failures, 10),
		}
		for k, v := range wantCells {
			if cells[k] != v {
				t.Errorf("backend %s cell %s = %q, want %q (row %q)", w.Backend.Addr, k, cells[k], v, cells)
			}
		}
		slots := fmt.Sprintf(` data-connecting="%d" data-idle="%d" data-checking="%d" data-claimed="%d" data-recycling="%d" data-backingoff="%d"`,
			w.Connecting, w.Idle, w.Checking, w.Claimed, w.Recycling, w.BackingOff)
		if attrs["slots"] != slots {
			t.Errorf("backend %s slots cell has%s, want%s", w.Backend.Addr, attrs["slots"], slots)
		}
		if !strings.HasPrefix(cells["health"], w.Health.String()) {
			t.Errorf("backend %s health cell = %q, want %s", w.Backend.Addr, cells["health"], w.Health)
		}
		// The page polled more than once, with no traffic in between.
		if w.Health == pool.HealthOnline && cells["claims/s"] != "0.0" {
			t.Errorf("backend %s claims/s = %q, want 0.0 after a second poll", w.Backend.Addr, cells["claims/s"])
		}
		for _, k := range []string{"rate", "wait", "errors"} {
			if !strings.Contains(detail[1], `<figure class="chart" data-k="`+k+`">`) {
				t.Errorf("backend %s has no %s chart: %s", w.Backend.Addr, k, detail[1])
			}
		}
		if w.LastError != "" && !strings.Contains(html.UnescapeString(detail[1]), w.LastError) {
			t.Errorf("backend %s detail row = %q, want its last error %q", w.Backend.Addr, detail[1], w.LastError)
		}
	}
	for k, v := range map[string]string{"slots": "4/4", "claimed": "1", "waiting": "0", "timeouts": "0", "leaks": "0"} {
		if !strings.Contains(dom, `<span data-k="`+k+`">`+v+`</span>`) {
			t.Errorf("pool total %q is not %s; DOM:\n%s", k, v, dom)
		}
	}
	if strings.Contains(dom, statsPassword) {
		t.Errorf("page shows the DSN's password")
	}
}
