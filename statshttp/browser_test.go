package statshttp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/statshttp"
)

var screenshots = flag.String("screenshots", "", "also save the stats page's screenshots in this `directory`")

// webDriver is a chromedriver process, driven through its WebDriver HTTP
// API with the standard library only.
type webDriver struct {
	t        *testing.T
	base     string // http://127.0.0.1:PORT
	chromium string
}

// startWebDriver starts chromedriver on a port of its choosing and stops
// it when the test ends. It fails, not skips, when chromium or
// chromedriver is missing (scripts/setup installs both), except with
// -short.
func startWebDriver(t *testing.T) *webDriver {
	t.Helper()
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err := cmpErr(err1, err2); err != nil {
		if testing.Short() {
			t.Skip("chromium or chromedriver not installed (scripts/setup installs them)")
		}
		t.Fatalf("chromium or chromedriver not installed: run scripts/setup (%v)", err)
	}
	cmd := exec.Command(driver, "--port=0", "--allowed-ips=127.0.0.1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The port it took, from the line that says it started; the rest of
	// its output is drained so that it never blocks on a full pipe.
	ports := make(chan string, 1)
	var drained sync.WaitGroup
	drained.Go(func() {
		started := regexp.MustCompile(`started successfully on port (\d+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := started.FindStringSubmatch(sc.Text()); m != nil {
				ports <- m[1]
			}
		}
		io.Copy(io.Discard, out)
	})
	t.Cleanup(func() {
		cmd.Process.Kill()
		drained.Wait()
		cmd.Wait()
	})
	select {
	case port := <-ports:
		return &webDriver{t: t, base: "http://127.0.0.1:" + port, chromium: chromium}
	case <-time.After(30 * time.Second):
		t.Fatal("chromedriver did not say on which port it listens")
		return nil
	}
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// call sends one WebDriver command and decodes its value into v.
func (w *webDriver) call(method, path string, body, v any) {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			w.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, w.base+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("WebDriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || resp.StatusCode != http.StatusOK {
		w.t.Fatalf("WebDriver %s %s: %s: %s", method, path, resp.Status, raw)
	}
	if v != nil {
		if err := json.Unmarshal(env.Value, v); err != nil {
			w.t.Fatalf("WebDriver %s %s: %v in %s", method, path, err, env.Value)
		}
	}
}

// browser is one headless Chromium window of the given size.
type browser struct {
	w    *webDriver
	path string // /session/ID
}

func (w *webDriver) open(width, height int) *browser {
	w.t.Helper()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": w.chromium,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--no-first-run", "--disable-quic", "--force-device-scale-factor=1",
				fmt.Sprintf("--window-size=%d,%d", width, height), "--user-data-dir=" + w.t.TempDir()},
		},
	}}}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	w.call("POST", "/session", caps, &s)
	b := &browser{w: w, path: "/session/" + s.SessionID}
	w.t.Cleanup(func() { w.call("DELETE", b.path, nil, nil) })
	return b
}

func (b *browser) get(url string) {
	b.w.call("POST", b.path+"/url", map[string]string{"url": url}, nil)
}

// run runs script (a function body) in the page and decodes what it
// returns into v.
func (b *browser) run(script string, v any) {
	b.w.call("POST", b.path+"/execute/sync", map[string]any{"script": script, "args": []any{}}, v)
}

func (b *browser) screenshot() []byte {
	var s string
	b.w.call("GET", b.path+"/screenshot", nil, &s)
	png, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b.w.t.Fatal(err)
	}
	return png
}

// box is an element's bounding box in the viewport, and what it says.
type box struct {
	Left, Right, Top, Bottom float64
	Text                     string
}

// pageGeometry is what TestPageFitsWindow measures in the page.
type pageGeometry struct {
	InnerWidth, InnerHeight  float64
	ClientWidth, ScrollWidth float64
	ScrollX, ScrollY         float64
	LastError                *box
	Cells                    []box // the main row cells of every backend
	RatePaths, RateCharts    int
	BackendsShown            int
}

const measure = `
const d = document.documentElement;
const bx = e => { const r = e.getBoundingClientRect(); return {Left: r.left, Right: r.right, Top: r.top, Bottom: r.bottom, Text: e.textContent}; };
const err = document.querySelector('tr.detail[data-addr="' + arguments[0] + '"] [data-k=last_error]');
return {InnerWidth: innerWidth, InnerHeight: innerHeight, ClientWidth: d.clientWidth, ScrollWidth: d.scrollWidth,
  ScrollX: scrollX, ScrollY: scrollY, LastError: err ? bx(err) : null,
  Cells: Array.from(document.querySelectorAll('tr.main td')).map(bx),
  RatePaths: document.querySelectorAll('figure[data-k=rate] path').length,
  RateCharts: document.querySelectorAll('figure[data-k=rate]').length,
  BackendsShown: document.querySelectorAll('tr.main').length};
`

// TestPageFitsWindow loads the stats page in headless Chromium, through
// chromedriver, at 800 and 1280 pixels wide while queries run, and
// measures it: the document is no wider than the window (no horizontal
// scroll), every cell of the backends' table is inside it, the dead
// backend's whole last error is inside the viewport without scrolling,
// and each backend has its claims/s chart, drawn from the history the
// page fetched. Screenshots go to the test's temporary directory (and
// to -screenshots DIR).
func TestPageFitsWindow(t *testing.T) {
	wd := startWebDriver(t)
	tr := newStatsTraffic(t, 30)
	ctx, cancel := context.WithCancel(t.Context())
	var traffic sync.WaitGroup
	t.Cleanup(func() { cancel(); traffic.Wait() })
	traffic.Go(func() { // queries until the test ends, for the charts
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				var answer string
				tr.db.QueryRowContext(ctx, "SELECT backend").Scan(&answer)
			}
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/debug/qorb", statshttp.Handler(tr.c))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var deadErr string
	for _, b := range tr.c.Stats().Backends {
		if b.Backend.Addr == tr.dead {
			deadErr = b.LastError
		}
	}
	if deadErr == "" {
		t.Fatalf("the dead backend %s has no last error", tr.dead)
	}

	dir := t.TempDir()
	for _, width := range []int{800, 1280} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			const height = 900
			b := wd.open(width, height)
			b.get(srv.URL + "/debug/qorb")
			// Four polls: three intervals of history for the charts.
			deadline := time.Now().Add(30 * time.Second)
			for {
				var polls int
				b.run(`return Number(document.body.dataset.polls || 0)`, &polls)
				if polls >= 4 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the page polled %d times in 30s, want 4", polls)
				}
				time.Sleep(100 * time.Millisecond)
			}
			var g pageGeometry
			b.w.call("POST", b.path+"/execute/sync", map[string]any{"script": measure, "args": []any{tr.dead}}, &g)
			png := b.screenshot()
			name := fmt.Sprintf("stats-page-%d.png", width)
			if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
			if *screenshots != "" {
				if err := os.WriteFile(filepath.Join(*screenshots, name), png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("at %d px: document %v px wide in a %v×%v viewport; screenshot %s",
				width, g.ScrollWidth, g.ClientWidth, g.InnerHeight, filepath.Join(dir, name))

			if g.InnerWidth != float64(width) {
				t.Errorf("window is %v px wide inside, want %d", g.InnerWidth, width)
			}
			if g.ScrollWidth > g.ClientWidth {
				t.Errorf("document is %v px wide in a %v px viewport: it scrolls sideways", g.ScrollWidth, g.ClientWidth)
			}
			if g.ScrollX != 0 || g.ScrollY != 0 {
				t.Errorf("page scrolled to %v,%v, want 0,0", g.ScrollX, g.ScrollY)
			}
			if g.BackendsShown != 4 || len(g.Cells) != 4*9 {
				t.Errorf("%d backends and %d cells shown, want 4 and 36", g.BackendsShown, len(g.Cells))
			}
			for _, c := range g.Cells {
				if c.Left < 0 || c.Right > g.ClientWidth {
					t.Errorf("cell %q spans %v–%v px, outside the %v px viewport", c.Text, c.Left, c.Right, g.ClientWidth)
				}
			}
			e := g.LastError
			switch {
			case e == nil:
				t.Errorf("no last error element for the dead backend %s", tr.dead)
			case !strings.Contains(e.Text, deadErr):
				t.Errorf("last error element says %q, want %q", e.Text, deadErr)
			case e.Left < 0 || e.Top < 0 || e.Right > g.ClientWidth || e.Bottom > g.InnerHeight:
				t.Errorf("last error at (%v,%v)–(%v,%v), outside the %vx%v viewport", e.Left, e.Top, e.Right, e.Bottom, g.ClientWidth, g.InnerHeight)
			}
			if g.RateCharts != 4 || g.RatePaths < 3 {
				t.Errorf("%d claims/s charts, %d with a line; want 4, and a line for each of the 3 live backends", g.RateCharts, g.RatePaths)
			}
		})
	}
}
