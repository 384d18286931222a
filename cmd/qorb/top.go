//go:build unix

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/qorb-go/qorb/statshttp"
)

func init() {
	register(command{
		name:    "top",
		summary: "show a pool's stats live, from the URL of its statshttp.Handler",
		run:     runTop,
	})
}

const topUsage = `usage: qorb top [-interval D] URL

Shows live, full screen, the stats a statshttp.Handler serves at URL (for
example http://127.0.0.1:6060/debug/qorb): per backend its address, role,
health ("?" marks a suspect one, "drained" one taken out of service),
slots by state, claims per second, the
mean claim wait and the failures over the last interval, its oldest
claim, sparklines of claims/s, wait and failures over the last two
minutes, and its last error; the pool's totals; when the resolver last
changed the backend set, and its last error; PAUSED when the pool holds
new claims.

The table fits the terminal: a narrow one drops the less telling columns
first (sparklines, slot states), never the address, health, claims/s or
failures, and an offline backend's last error gets a line of its own when
its column has no room. A legend under the table explains the health.

Keys: q quits (so do Ctrl-C and SIGTERM), p pauses and resumes polling,
s sorts by the next column of address, claims/s, wait and errors.

flags:
`

// topSorts are the columns "s" cycles through.
var topSorts = []string{"address", "claims/s", "wait", "errors"}

// runTop is "qorb top".
func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qorb top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(stderr, topUsage)
		fs.PrintDefaults()
	}
	interval := fs.Duration("interval", time.Second, "time between two polls of URL")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "qorb top: want exactly one URL")
		fs.Usage()
		return 2
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "qorb top: %q is not an http or https URL\n", fs.Arg(0))
		return 2
	}
	if *interval < 100*time.Millisecond {
		fmt.Fprintln(stderr, "qorb top: -interval must be at least 100ms")
		return 2
	}
	q := u.Query()
	q.Set("format", "json")
	u.RawQuery = q.Encode()

	t := &top{url: u.String(), display: fs.Arg(0), interval: *interval, out: stdout}
	return t.run(ctx)
}

// top is one run of "qorb top": the last two snapshots and the view's
// state. Only run's goroutine touches it.
type top struct {
	url, display string
	interval     time.Duration
	out          io.Writer

	cur, prev *statshttp.Snapshot
	fetchErr  error
	paused    bool
	sort      int // index in topSorts

	polls   int                 // snapshots taken in so far
	history map[string]*history // by backendKey, for the sparklines
}

// backendKey names a backend across two snapshots.
func backendKey(b *statshttp.Backend) string { return b.Host + "@" + b.Addr }

// fetchResult is what one poll brought back.
type fetchResult struct {
	st  *statshttp.Snapshot
	err error
}

// run shows the view until q, Ctrl-C or ctx's end, and restores the
// terminal whatever happens.
func (t *top) run(ctx context.Context) int {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below: the key reader and any poll
	defer cancel()

	keys, stopKeys, err := readKeys(&wg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "qorb top: %v\n", err)
		return 1
	}
	defer stopKeys()

	io.WriteString(t.out, "\x1b[?1049h\x1b[?25l") // alternate screen, no cursor
	defer io.WriteString(t.out, "\x1b[?25h\x1b[?1049l")

	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)

	client := &http.Client{Timeout: max(2*time.Second, t.interval)}
	results := make(chan fetchResult, 1)
	inflight := false
	poll := func() {
		if inflight || t.paused {
			return
		}
		inflight = true
		wg.Go(func() { results <- t.fetch(ctx, client) })
	}
	ticker := time.NewTicker(t.interval)
	defer ticker.Stop()
	poll()
	t.draw()
	for {
		select {
		case <-ctx.Done():
			return 0
		case k, ok := <-keys:
			if !ok {
				keys = nil // stdin closed: only signals end the view
				continue
			}
			switch k {
			case 'q', 'Q', 3, 4: // q, Ctrl-C, Ctrl-D
				return 0
			case 'p', 'P', ' ':
				t.paused = !t.paused
				poll()
			case 's', 'S':
				t.sort = (t.sort + 1) % len(topSorts)
			}
			t.draw()
		case <-ticker.C:
			poll()
		case r := <-results:
			inflight = false
			if r.err != nil {
				t.fetchErr = r.err
			} else {
				t.fetchErr = nil
				t.push(r.st)
			}
			t.draw()
		case <-winch:
			t.draw()
		}
	}
}

// readKeys puts the terminal on stdin in raw mode and starts a goroutine,
// counted in wg, that sends each byte typed. stop ends that goroutine and
// restores the terminal.
func readKeys(wg *sync.WaitGroup) (keys <-chan byte, stop func(), err error) {
	fd := int(os.Stdin.Fd())
	restore := func() {}
	if term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return nil, nil, fmt.Errorf("raw mode: %w", err)
		}
		restore = func() { term.Restore(fd, old) }
	}
	// A non-blocking descriptor goes through the runtime's poller, so a
	// read deadline can wake the reader when the view ends.
	if err := syscall.SetNonblock(fd, true); err != nil {
		restore()
		return nil, nil, err
	}
	in := os.NewFile(uintptr(fd), "/dev/stdin")
	ch := make(chan byte, 16)
	done := make(chan struct{})
	wg.Go(func() {
		defer close(ch)
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			for _, b := range buf[:n] {
				select {
				case ch <- b:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	stop = func() {
		close(done)
		in.SetReadDeadline(time.Now())
		syscall.SetNonblock(fd, false)
		restore()
	}
	return ch, stop, nil
}

// fetch polls the handler once.
func (t *top) fetch(ctx context.Context, client *http.Client) fetchResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return fetchResult{err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fetchResult{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fetchResult{err: fmt.Errorf("%s: %s", t.display, resp.Status)}
	}
	st := new(statshttp.Snapshot)
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(st); err != nil {
		return fetchResult{err: fmt.Errorf("%s: not qorb stats: %v", t.display, err)}
	}
	return fetchResult{st: st}
}

// topRow is one backend as shown.
type topRow struct {
	b      *statshttp.Backend
	rate   float64 // claims/s over the last interval; -1: not known yet
	wait   float64 // mean claim wait over the last interval, in seconds; -1: no claims
	errors uint64  // failures over the last interval

	// Over the last interval, when rate is known: its length, the
	// claims served and the seconds they waited in all.
	seconds float64
	claims  uint64
	waitSum float64
}

// rows computes the rows from the last two snapshots, in the sort order.
func (t *top) rows() []topRow {
	prev := map[string]*statshttp.Backend{}
	var dt float64
	if t.prev != nil {
		dt = t.cur.Time.Sub(t.prev.Time).Seconds()
		for i := range t.prev.Backends {
			prev[backendKey(&t.prev.Backends[i])] = &t.prev.Backends[i]
		}
	}
	rows := make([]topRow, 0, len(t.cur.Backends))
	for i := range t.cur.Backends {
		b := &t.cur.Backends[i]
		r := topRow{b: b, rate: -1, wait: -1, errors: b.Failures}
		if p := prev[backendKey(b)]; p != nil && dt > 0 && b.Claims >= p.Claims {
			n := b.Claims - p.Claims
			r.rate = float64(n) / dt
			r.seconds, r.claims, r.waitSum = dt, n, max(0, b.WaitSeconds-p.WaitSeconds)
			if n > 0 {
				r.wait = r.waitSum / float64(n)
			}
			r.errors = b.Failures - min(p.Failures, b.Failures)
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(x, y topRow) int {
		switch topSorts[t.sort] {
		case "claims/s":
			return cmp.Compare(y.rate, x.rate)
		case "wait":
			return cmp.Compare(y.wait, x.wait)
		case "errors":
			return cmp.Or(cmp.Compare(y.errors, x.errors), cmp.Compare(y.b.Failures, x.b.Failures))
		}
		return cmp.Or(cmp.Compare(x.b.Addr, y.b.Addr), cmp.Compare(x.b.Host, y.b.Host))
	})
	return rows
}

// draw redraws the whole screen.
func (t *top) draw() {
	width, height := termSize()
	paint(t.out, t.lines(width), "q quit  p pause  s sort (address, claims/s, wait, errors)", width, height)
}

// termSize returns the size of the terminal on stdout, or 120×40 when
// stdout is not a terminal.
func termSize() (width, height int) {
	if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
		return w, h
	}
	return 120, 40
}

// lines returns the view above its key line: the title, the pool's
// totals, the resolver, and the backends' table. "qorb demo" shows the
// same lines under its own.
func (t *top) lines(width int) []string {
	var lines []string
	add := func(s string) { lines = append(lines, wrap(s, width, 2)...) }

	state := "every " + t.interval.String()
	if t.paused {
		state = "\x1b[7m PAUSED \x1b[0m"
	}
	now := time.Now().Format("15:04:05")
	add(fmt.Sprintf("\x1b[1mqorb top\x1b[0m  %s  %s  sort: %s  %s", t.display, state, topSorts[t.sort], now))
	switch {
	case t.fetchErr != nil:
		add("\x1b[31mfetch failed: " + t.fetchErr.Error() + "\x1b[0m")
	case t.cur == nil:
		add("waiting for the first snapshot…")
	default:
		add("")
	}
	if t.cur != nil {
		lines = append(lines, t.poolLines(width)...)
	}
	return lines
}

// poolLines are the pool's totals, the resolver's state and the backends'
// table of the last snapshot.
func (t *top) poolLines(width int) []string {
	var lines []string
	add := func(s string) { lines = append(lines, wrap(s, width, 3)...) }
	rows := t.rows()
	var conn, idle, check, claimed, recyc, backoff int
	rate, known := 0.0, false
	for _, r := range rows {
		s := r.b.Slots
		conn, idle, check, claimed, recyc, backoff = conn+s.Connecting, idle+s.Idle, check+s.Checking,
			claimed+s.Claimed, recyc+s.Recycling, backoff+s.BackingOff
		if r.rate >= 0 {
			rate, known = rate+r.rate, true
		}
	}
	total := conn + idle + check + claimed + recyc + backoff
	paused := ""
	if t.cur.Paused {
		paused = "  \x1b[33mPAUSED\x1b[39m: new claims wait"
	}
	add(fmt.Sprintf("pool      slots %d/%d (claimed %d, idle %d, connecting %d, checking %d, recycling %d, backing off %d)%s",
		total, t.cur.MaxSlots, claimed, idle, conn, check, recyc, backoff, paused))
	leaks := fmt.Sprint(t.cur.Leaks)
	if t.cur.Leaks > 0 {
		leaks = "\x1b[31m" + leaks + "\x1b[39m"
	}
	add(fmt.Sprintf("          claims/s %s  waiting %d  timeouts %d  failed claims %d  leaks %s  backends %d",
		rateString(rate, known), t.cur.Waiting, t.cur.Timeouts, t.cur.Failures, leaks, len(rows)))
	ago := func(at *time.Time) string {
		if at == nil {
			return "never"
		}
		return agoString(t.cur.Time.Sub(*at)) + " ago (" + at.Local().Format("15:04:05") + ")"
	}
	state := "\x1b[32mok\x1b[39m"
	switch {
	case t.cur.ResolverFailing:
		state = "\x1b[7;31m FAILING \x1b[0m"
	case t.cur.Stale:
		state = "\x1b[7;33m STALE \x1b[0m"
	}
	add(fmt.Sprintf("resolver  %s  set confirmed %s  backends changed %s", state, ago(t.cur.ConfirmedAt), ago(t.cur.BackendsChangedAt)))
	if t.cur.ResolverError == "" {
		add("          last error: none")
	} else {
		add("          last error " + ago(t.cur.ResolverErrorAt) + ": \x1b[31m" + t.cur.ResolverError + "\x1b[0m")
	}
	add("")
	return append(lines, t.tableLines(rows, width)...)
}

// paint redraws the whole screen from the top left: lines, cut or padded
// to the screen's height less one, then footer on the last line.
func paint(out io.Writer, lines []string, footer string, width, height int) {
	for len(lines) < height-1 {
		lines = append(lines, "")
	}
	lines = append(lines[:max(0, height-1)], "\x1b[2m"+footer+"\x1b[0m")

	var b strings.Builder
	b.WriteString("\x1b[H")
	for i, l := range lines {
		b.WriteString(clip(l, width))
		b.WriteString("\x1b[0m\x1b[K")
		if i < len(lines)-1 {
			b.WriteString("\r\n")
		}
	}
	io.WriteString(out, b.String())
}

func healthColor(h string) string {
	switch h {
	case "online":
		return "\x1b[32m"
	case "offline":
		return "\x1b[31m"
	case "removed":
		return "\x1b[2m"
	}
	return "\x1b[33m"
}

// pad pads s to width runes, to the right when right is set, truncating
// it if it is longer.
func pad(s string, width int, right bool) string {
	s = truncate(s, width)
	n := width - len([]rune(s))
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}

// truncate shortens s to width runes, ending it with … when it cut.
func truncate(s string, width int) string {
	r := []rune(s)
	if width <= 0 || len(r) <= width {
		return s
	}
	return string(r[:width-1]) + "…"
}

// clip cuts a line with escape sequences to width visible runes.
func clip(s string, width int) string {
	var b strings.Builder
	visible := 0
	esc := false
	for _, r := range s {
		switch {
		case esc:
			b.WriteRune(r)
			if r >= '@' && r <= '~' && r != '[' {
				esc = false
			}
		case r == '\x1b':
			esc = true
			b.WriteRune(r)
		case visible < width:
			b.WriteRune(r)
			visible++
		}
	}
	return b.String()
}

func rateString(r float64, known bool) string {
	if !known {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// durString formats seconds with three significant figures or so.
func durString(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1e-3:
		return strconv.FormatFloat(s*1e6, 'f', 0, 64) + "µs"
	case s < 1:
		return strconv.FormatFloat(s*1e3, 'f', 1, 64) + "ms"
	case s < 120:
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	}
	return agoString(time.Duration(s * float64(time.Second)))
}

// agoString formats d to the second.
func agoString(d time.Duration) string {
	return max(0, d).Round(time.Second).String()
}
