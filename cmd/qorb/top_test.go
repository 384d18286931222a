//go:build unix

package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/statshttp"
)

// nopOpener opens connections that accept every statement, except to
// the backend dead, whose connections fail.
type nopOpener struct{ dead string }

func (o nopOpener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	if b.Addr == o.dead {
		return nil, errors.New("dial tcp " + b.Addr + ": connection refused")
	}
	return nopConn{}, nil
}
func (nopOpener) Ping(context.Context, driver.Conn) error          { return nil }
func (nopOpener) Recycle(context.Context, driver.Conn, bool) error { return nil }
func (nopOpener) Role(context.Context, driver.Conn) (resolver.Role, error) {
	return resolver.RoleUnknown, nil
}

type nopConn struct{}

func (nopConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("nop: no statements") }
func (nopConn) Close() error                        { return nil }
func (nopConn) Begin() (driver.Tx, error)           { return nil, errors.New("nop: no transactions") }
func (nopConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return driver.RowsAffected(0), nil
}

// liveStats serves the stats of a connector over three good backends and
// a dead one, with a goroutine running statements on it until the test
// ends. It returns the handler's URL.
func liveStats(t *testing.T) (url string, dead string) {
	t.Helper()
	var bs []resolver.Backend
	for i, w := range []uint16{1, 2, 3, 1} {
		bs = append(bs, resolver.Backend{Host: "127.0.0.1", Addr: "127.0.0.1:" + strconv.Itoa(7001+i), Weight: w})
	}
	dead = bs[3].Addr
	r, err := resolver.NewStatic(bs...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := qorb.NewConnector(qorb.Config{Opener: nopOpener{dead: dead}, Resolver: r,
		Settings: qorb.Settings{Policy: pool.Policy{MaxSlots: 8, MaxPerBackend: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond) // about 500 statements a second
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				db.ExecContext(ctx, "UPDATE t SET n = n + 1")
			}
		}
	})
	srv := httptest.NewServer(statshttp.Handler(c))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
		db.Close()
	})
	return srv.URL + "/debug/qorb", dead
}

// fixedPool is a pool whose stats never change.
type fixedPool pool.Stats

func (p fixedPool) Stats() pool.Stats { return pool.Stats(p) }

// TestTopReadsHandler ties the two sides of the stats JSON together: top's
// fetch decodes what statshttp.Handler serves into the very snapshot the
// handler made, every field set, and top's view shows it.
func TestTopReadsHandler(t *testing.T) {
	changed := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	st := pool.Stats{
		MaxSlots: 24, Waiting: 2, Paused: true, Timeouts: 3, Failures: 4, Leaks: 5,
		ResolverError: "lookup _pg._tcp.db: timeout", BackendsChangedAt: changed,
		ResolverErrorAt: changed.Add(2 * time.Minute), ResolverFailing: true, Stale: true, ConfirmedAt: changed.Add(time.Minute),
		Backends: []pool.BackendStats{{
			Backend: resolver.Backend{Host: "db1", Addr: "10.0.0.1:5432", Priority: 1, Weight: 2, Role: resolver.RolePrimary},
			Health:  pool.HealthOnline, Suspect: true, Wanted: 5,
			Connecting: 1, Idle: 2, Checking: 3, Claimed: 4, Recycling: 5, BackingOff: 6,
			Claims: 100, Waits: 10, WaitTime: 1500 * time.Millisecond, Failures: 7, OldestClaim: 2 * time.Second,
			LastError: "connection reset by peer", LastErrorAt: changed.Add(time.Minute),
		}, {
			Backend: resolver.Backend{Host: "db2", Addr: "10.0.0.2:5432", Priority: 1, Weight: 1, Role: resolver.RoleReplica},
			Health:  pool.HealthOnline, Drained: true, Claimed: 1,
		}},
	}
	srv := httptest.NewServer(statshttp.Handler(fixedPool(st)))
	defer srv.Close()
	tp := &top{url: srv.URL + "/debug/qorb?format=json", display: srv.URL, interval: time.Second}
	r := tp.fetch(t.Context(), srv.Client())
	if r.err != nil {
		t.Fatalf("fetch: %v", r.err)
	}
	if want := statshttp.NewSnapshot(st, r.st.Time); !reflect.DeepEqual(*r.st, want) {
		t.Errorf("top decoded\n%+v\nwant\n%+v", *r.st, want)
	}

	tp.cur = r.st
	screen := strings.Join(tp.lines(200), "\n")
	for _, want := range []string{"db1 10.0.0.1:5432", "primary", "online?", "connection reset by peer",
		"lookup _pg._tcp.db: timeout", " FAILING ", "set confirmed ", "slots 22/24", "PAUSED", "drained", "waiting 2", "timeouts 3", "failed claims 4", "leaks \x1b[31m5"} {
		if !strings.Contains(screen, want) {
			t.Errorf("top's view lacks %q:\n%s", want, screen)
		}
	}
}

// tmuxPane is a shell in a detached tmux session of its own server.
type tmuxPane struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, width, height int) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if testing.Short() {
			t.Skip("tmux not installed (scripts/setup installs it)")
		}
		t.Fatalf("tmux not installed: run scripts/setup (%v)", err)
	}
	dir, err := os.MkdirTemp("", "qorbtop") // short: a socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	p := &tmuxPane{t: t, sock: filepath.Join(dir, "s")}
	t.Cleanup(func() {
		exec.Command("tmux", "-S", p.sock, "kill-server").Run()
		os.RemoveAll(dir)
	})
	p.run("-u", "-f", "/dev/null", "new-session", "-d", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height),
		"env", "PS1=$ ", "TERM=xterm-256color", "LANG=C.UTF-8", "sh")
	return p
}

func (p *tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func (p *tmuxPane) keys(keys ...string) {
	p.t.Helper()
	p.run(append([]string{"send-keys"}, keys...)...)
}
func (p *tmuxPane) screen() string { p.t.Helper(); return p.run("capture-pane", "-p") }
func (p *tmuxPane) format(f string) string {
	p.t.Helper()
	return strings.TrimSpace(p.run("display-message", "-p", f))
}

// waitScreen polls the screen until cond holds, failing after 15 s.
func (p *tmuxPane) waitScreen(what string, cond func(screen string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := p.screen()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("screen never showed %s; last screen:\n%s", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildQorb builds the qorb command into a temporary directory.
func buildQorb(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qorb")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var (
	poolRate   = regexp.MustCompile(`claims/s ([0-9.]+)`)
	exitStatus = regexp.MustCompile(`EXIT=[0-9]`)
	backendRow = regexp.MustCompile(`(?m)^(127\.0\.0\.1:\d+) .*$`)
)

// column returns the index of the header name among the fields of the
// table's header line on screen.
func column(t *testing.T, screen, name string) int {
	t.Helper()
	for line := range strings.Lines(screen) {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "BACKEND") {
			if i := slices.Index(f, name); i >= 0 {
				return i
			}
		}
	}
	t.Fatalf("no column %s on screen:\n%s", name, screen)
	return 0
}

// tableRows returns the backend rows on screen, in order, as fields.
func tableRows(screen string) [][]string {
	var rows [][]string
	for _, m := range backendRow.FindAllString(screen, -1) {
		rows = append(rows, strings.Fields(m))
	}
	return rows
}

// checkRestored checks that top exited with status 0 and left the
// terminal as it found it: main screen, cursor shown, cooked mode.
func checkRestored(t *testing.T, p *tmuxPane) {
	t.Helper()
	s := p.waitScreen("the shell again", exitStatus.MatchString)
	if !strings.Contains(s, "EXIT=0") {
		t.Errorf("qorb top did not exit with status 0:\n%s", s)
	}
	if strings.Contains(s, "BACKEND") || strings.Contains(s, "qorb top  http") {
		t.Errorf("the view is still on screen after exit:\n%s", s)
	}
	if got := p.format("#{alternate_on} #{cursor_flag}"); got != "0 1" {
		t.Errorf("after exit: alternate screen, cursor shown = %q, want \"0 1\"", got)
	}
	p.keys("clear; stty -a | tr -s ' ;' '\\n\\n' | grep -E '^-?(isig|icanon|echo)$' | tr '\\n' ' '; echo $((6*7))END", "Enter")
	s = p.waitScreen("stty's answer", func(s string) bool { return strings.Contains(s, "42END") })
	if !strings.Contains(s, "isig icanon echo 42END") {
		t.Errorf("terminal not back in cooked mode after exit:\n%s", s)
	}
}

// TestTopInTmux runs the built qorb top in tmux against a live handler and
// reads its screen: the backends and their traffic, sorting, pausing,
// and quitting with q, and on SIGINT, both restoring the terminal. It
// fails, not skips, when tmux is missing, except with -short.
func TestTopInTmux(t *testing.T) {
	p := newTmux(t, 160, 40)
	bin := buildQorb(t)
	url, dead := liveStats(t)

	p.keys(bin+" top -interval 200ms "+url+"; echo EXIT=$?", "Enter")
	s := p.waitScreen("the backends and traffic", func(s string) bool {
		m := poolRate.FindStringSubmatch(s)
		return len(tableRows(s)) == 4 && m != nil && m[1] != "0.0"
	})
	if !strings.Contains(s, "sort: address") || !strings.Contains(s, "BACKEND*") {
		t.Errorf("initial sort is not by address:\n%s", s)
	}
	if got := p.format("#{alternate_on} #{cursor_flag}"); got != "1 0" {
		t.Errorf("while running: alternate screen, cursor shown = %q, want \"1 0\"", got)
	}
	for i, r := range tableRows(s) {
		if want := "127.0.0.1:" + strconv.Itoa(7001+i); r[0] != want {
			t.Errorf("row %d by address = %s, want %s\n%s", i, r[0], want, s)
		}
	}
	if !strings.Contains(s, "dial tcp "+dead) || !strings.Contains(s, "backends changed") {
		t.Errorf("screen lacks the dead backend's error or the resolver line:\n%s", s)
	}

	// s: by claims/s, highest first (column 10 of a row).
	p.keys("s")
	s = p.waitScreen("the claims/s sort", func(s string) bool {
		return strings.Contains(s, "sort: claims/s") && strings.Contains(s, "CLAIMS/S*")
	})
	if strings.Contains(s, "BACKEND*") {
		t.Errorf("the address column is still marked after s:\n%s", s)
	}
	s = p.waitScreen("rows with rates", func(s string) bool { return len(tableRows(s)) == 4 })
	col := column(t, s, "CLAIMS/S*")
	last := -1.0
	for i, r := range tableRows(s) {
		rate, err := strconv.ParseFloat(r[col], 64)
		if err != nil {
			t.Fatalf("row %d claims/s %q: %v\n%s", i, r[col], err, s)
		}
		if last >= 0 && rate > last {
			t.Errorf("row %d has %v claims/s, more than the row above (%v):\n%s", i, rate, last, s)
		}
		last = rate
	}

	// s, s: by errors; the dead backend comes first.
	p.keys("s")
	p.waitScreen("the wait sort", func(s string) bool { return strings.Contains(s, "sort: wait") && strings.Contains(s, "WAIT*") })
	p.keys("s")
	s = p.waitScreen("the errors sort", func(s string) bool {
		return strings.Contains(s, "sort: errors") && strings.Contains(s, "ERRORS*") && len(tableRows(s)) == 4
	})
	if r := tableRows(s); r[0][0] != dead {
		t.Errorf("first row by errors = %s, want the dead backend %s\n%s", r[0][0], dead, s)
	}

	// p pauses, p again resumes.
	p.keys("p")
	p.waitScreen("PAUSED", func(s string) bool { return strings.Contains(s, "PAUSED") })
	p.keys("p")
	p.waitScreen("polling again", func(s string) bool { return !strings.Contains(s, "PAUSED") && strings.Contains(s, "every 200ms") })

	// q quits and restores the terminal.
	p.keys("q")
	checkRestored(t, p)

	// So does SIGINT.
	p.keys("clear; "+bin+" top -interval 200ms "+url+"; echo EXIT=$?", "Enter")
	p.waitScreen("the view again", func(s string) bool { return len(tableRows(s)) == 4 })
	shell, _ := strconv.Atoi(p.format("#{pane_pid}"))
	children, err := os.ReadFile("/proc/" + strconv.Itoa(shell) + "/task/" + strconv.Itoa(shell) + "/children")
	if err != nil {
		t.Fatal(err)
	}
	top, err := strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		t.Fatalf("children of the shell: %q", children)
	}
	if err := syscall.Kill(top, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, p)
}

// TestTopFitsScreen runs the built qorb top in tmux at 80×24 and 120×40
// against a live handler whose fourth backend is offline, and reads the
// screen: every backend's address, the offline one's last error whole,
// the legend that explains "offline" and "?", and the key line, all
// within the screen; at 120 columns the claims/s sparklines too.
func TestTopFitsScreen(t *testing.T) {
	bin := buildQorb(t)
	url, dead := liveStats(t)
	deadErr := "dial tcp " + dead + ": connection refused"
	for _, size := range []struct{ w, h int }{{80, 24}, {120, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size.w, size.h), func(t *testing.T) {
			p := newTmux(t, size.w, size.h)
			p.keys(bin+" top -interval 200ms "+url+"; echo EXIT=$?", "Enter")
			s := p.waitScreen("the offline backend and its error", func(s string) bool {
				rows, m := tableRows(s), poolRate.FindStringSubmatch(s)
				return len(rows) == 4 && m != nil && m[1] != "0.0" && strings.Contains(s, deadErr) && slices.Contains(rows[3], "offline") &&
					(size.w < 120 || strings.ContainsAny(rows[0][len(rows[0])-1], "▂▃▄▅▆▇█"))
			})
			t.Logf("screen at %dx%d:\n%s", size.w, size.h, s)
			lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
			if len(lines) != size.h {
				t.Errorf("screen has %d lines, want %d", len(lines), size.h)
			}
			for i, r := range tableRows(s) {
				if want := "127.0.0.1:" + strconv.Itoa(7001+i); r[0] != want {
					t.Errorf("row %d shows %s, want the address %s", i, r[0], want)
				}
			}
			for _, want := range []string{"offline = connection attempts failed", "? = suspect", "claims/s", "resolver"} {
				if !strings.Contains(strings.Join(strings.Fields(s), " "), want) {
					t.Errorf("screen lacks %q", want)
				}
			}
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "q quit") {
				t.Errorf("last line = %q, want the key line", last)
			}
			for _, h := range []string{"HEALTH", "CLAIMS/S", "ERRORS"} {
				column(t, s, h)
			}
			if size.w >= 120 {
				column(t, s, "CLAIMED")
				if !strings.Contains(s, "CLAIMS/S TREND") {
					t.Errorf("no claims/s sparklines at %d columns", size.w)
				}
			}
			p.keys("q")
			checkRestored(t, p)
		})
	}
}

// TestTopLayoutWidths lays a pool with long host names and errors out at
// widths from 50 to 220 columns: no line is wider than the screen, every
// backend's address is on screen, the offline backend's last error is
// there whole, and the health, claims/s and errors columns always are.
func TestTopLayoutWidths(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	errAt := at.Add(-time.Second) // 3s before the last snapshot
	offErr := "mysqldialect: connect to b2.demo.qorb.test@127.0.0.1:35533: dial tcp 127.0.0.1:35533: connect: connection refused"
	var bs []pool.BackendStats
	for i, h := range []pool.Health{pool.HealthOnline, pool.HealthOffline, pool.HealthOnline} {
		b := pool.BackendStats{
			Backend: resolver.Backend{Host: fmt.Sprintf("b%d.demo.qorb.test", i+1), Addr: fmt.Sprintf("127.0.0.1:3553%d", i+1)},
			Health:  h, Idle: 2, Claims: uint64(100 * i),
		}
		if h == pool.HealthOffline {
			b.LastError, b.LastErrorAt, b.Suspect = offErr, errAt, true
		}
		bs = append(bs, b)
	}
	tp := &top{display: "http://127.0.0.1:1/debug/qorb", interval: time.Second}
	for i := range 3 {
		for j := range bs {
			bs[j].Claims += uint64(10 * j)
		}
		st := statshttp.NewSnapshot(pool.Stats{MaxSlots: 8, Backends: bs}, at.Add(time.Duration(i)*time.Second))
		tp.push(&st)
	}
	for width := 50; width <= 220; width += 5 {
		lines := tp.lines(width)
		for _, l := range lines {
			if n := visibleLen(l); n > width {
				t.Errorf("width %d: a line of %d: %q", width, n, l)
			}
		}
		text := strings.Join(lines, "\n")
		plain := regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`).ReplaceAllString(text, "")
		joined := strings.Join(strings.Fields(plain), " ")
		for _, b := range bs {
			if !strings.Contains(plain, b.Backend.Addr) {
				t.Errorf("width %d: no address %s:\n%s", width, b.Backend.Addr, plain)
			}
		}
		if !strings.Contains(joined, "3s ago: "+offErr) {
			t.Errorf("width %d: the offline backend's error is not whole on screen:\n%s", width, plain)
		}
		for _, h := range []string{"HEALTH", "CLAIMS/S", "ERRORS", "offline?"} {
			if !strings.Contains(plain, h) {
				t.Errorf("width %d: no %s:\n%s", width, h, plain)
			}
		}
		if width >= 180 && !strings.Contains(plain, "b1.demo.qorb.test 127.0.0.1:35531") {
			t.Errorf("width %d: no host names:\n%s", width, plain)
		}
	}
}
