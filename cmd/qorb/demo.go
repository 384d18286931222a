//go:build unix

package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/term"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/mysqldialect"
	_ "github.com/qorb-go/qorb/dialects/pgdialect"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/statshttp"
)

func init() {
	register(command{
		name:    "demo",
		summary: "watch the pool spread load over three embedded MySQL backends and ride through one dying",
		run:     runDemo,
	})
}

const demoUsage = `usage: qorb demo [-duration D] [-workers N] [-no-tui] [-dsn DSN]

Starts three MySQL-compatible servers in this process (go-mysql-server,
in memory, on 127.0.0.1) and a DNS server that publishes them as SRV
records, opens them with sql.Open("qorb", "mysql+srv://..."), and runs a
read workload from many goroutines. Each query asks which backend answered.

A live view shows each backend's slots by state, queries per second,
claim waits and errors. At 35% of the run the demo stops one backend (it
refuses new connections and closes those it has, answering any
statement already running), and at 55% it publishes a fourth backend in
DNS: traffic leaves the dead one and reaches the new one, and the
application sees no error.

While it runs, the demo serves its pool's stats page on 127.0.0.1 and
prints the address, with that of its DNS server, so that another
terminal can watch the same pool: "qorb top URL" (or a browser at URL),
and "qorb resolve -server ADDR _mysql._tcp.demo.qorb.test".

At the end it prints a summary, one "summary:" line per fact: queries
per backend, queries the stopped backend answered after it stopped,
errors the application saw, and claim wait percentiles. The exit status
is 1 when the application saw errors.

With -dsn the same workload runs against real servers (a qorb DSN for
PostgreSQL or MySQL), without the embedded ones, their DNS server and
without stopping anything.

flags:
`

// demoPolicy is the pool policy of the embedded demo: quick to notice a
// dead backend and a new one, so that both show within a short run.
const demoPolicy = "pool_max_conns=24&pool_max_conns_per_backend=12&pool_spares=4" +
	"&pool_health_check_period=1s&pool_health_check_timeout=500ms" +
	"&pool_connect_timeout=1s&pool_backoff_min=20ms&pool_backoff_max=1s" +
	"&pool_rebalance_delay=50ms&pool_rebalance_interval=1s&pool_claim_timeout=10s"

// runDemo is "qorb demo".
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qorb demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(stderr, demoUsage)
		fs.PrintDefaults()
	}
	duration := fs.Duration("duration", 30*time.Second, "how long the demo runs; it always stops by itself")
	workers := fs.Int("workers", 32, "goroutines running queries")
	noTUI := fs.Bool("no-tui", false, "print plain lines once a second instead of the live view (for logs and CI)")
	httpAddr := fs.String("http", "127.0.0.1:0", "serve the pool's stats page at http://`ADDR`/debug/qorb while the demo runs (port 0: any free port)")
	dsn := fs.String("dsn", "", "run the workload against the servers of this qorb `DSN` (postgres://, postgres+srv://, mysql://, mysql+srv://) instead of embedded ones")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "qorb demo: takes no arguments")
		fs.Usage()
		return 2
	}
	if *duration < time.Second || *workers < 1 {
		fmt.Fprintln(stderr, "qorb demo: -duration must be at least 1s and -workers at least 1")
		return 2
	}

	d := &demo{duration: *duration, workers: *workers, out: &syncWriter{w: stdout}, errOut: stderr,
		httpAddr: *httpAddr, served: map[string]*servedCount{}}
	d.tui = !*noTUI && isTerminal(stdout)
	if *dsn != "" {
		d.dsn = *dsn
		d.query = identifyQuery(*dsn)
	} else {
		// The drivers log to stderr, which would scribble over the live
		// view; the demo shows what matters itself.
		mysql.SetLogger(log.New(io.Discard, "", 0))
		c, err := startCluster(3)
		if err != nil {
			fmt.Fprintf(stderr, "qorb demo: %v\n", err)
			return 1
		}
		defer func() {
			if err := c.close(); err != nil {
				fmt.Fprintf(stderr, "qorb demo: %v\n", err)
			}
		}()
		d.cluster = c
		d.dsn = "mysql+srv://root@" + demoName + "/demo?dns_server=" + url.QueryEscape(c.dns.Addr()) + "&" + demoPolicy
		d.query = "SELECT name FROM backend"
	}
	return d.run(ctx)
}

// identifyQuery returns the query that names the backend that answers:
// its port, for a DSN's scheme.
func identifyQuery(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "SELECT inet_server_port()::text"
	}
	return "SELECT @@port"
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// demo is one run of "qorb demo".
type demo struct {
	duration time.Duration
	workers  int
	tui      bool
	dsn      string
	query    string
	out      io.Writer
	errOut   io.Writer
	cluster  *cluster // nil with -dsn
	httpAddr string   // where to serve the stats page

	statsURL string // the stats page, once served
	view     *top   // the live view's state: its last snapshots and trends

	start     time.Time
	waits     histogram
	queries   atomic.Uint64
	appErrors atomic.Uint64

	mu        sync.Mutex
	served    map[string]*servedCount // by the name the query returned
	lastErr   string
	events    []string // what the demo did, for the view
	stoppedAt time.Time
	stopped   string // name of the stopped backend
	added     string // name of the added backend
}

// servedCount is what the application saw of one backend.
type servedCount struct {
	n         atomic.Uint64
	afterStop atomic.Uint64 // queries started after its server stopped
	lastN     uint64        // n at the last redraw
}

// run opens the database, runs the workload, the schedule and the view
// until the duration is over or ctx ends, and prints the summary.
func (d *demo) run(ctx context.Context) int {
	cfg, err := qorb.ParseDSN(d.dsn)
	if err != nil {
		fmt.Fprintf(d.errOut, "qorb demo: %v\n", err)
		return 2
	}
	cfg.Policy.Observer = pool.Observers(cfg.Policy.Observer, pool.ObserverFunc(func(ev pool.Event) {
		if ev.Kind == pool.EventClaim {
			d.waits.add(ev.Duration)
		}
	}))
	connector, err := qorb.NewConnector(cfg)
	if err != nil {
		fmt.Fprintf(d.errOut, "qorb demo: %v\n", err)
		return 1
	}
	db := sql.OpenDB(connector)
	// database/sql keeps a handle per worker, so each query reuses one:
	// the handle claims a pooled connection as the query starts.
	db.SetMaxIdleConns(d.workers)
	defer db.Close()

	// The stats page, for "qorb top" or a browser in another terminal.
	ln, err := net.Listen("tcp", d.httpAddr)
	if err != nil {
		fmt.Fprintf(d.errOut, "qorb demo: stats page: %v\n", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle("/debug/qorb", statshttp.Handler(connector))
	stats := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var served sync.WaitGroup
	defer served.Wait()
	defer stats.Close() // before the wait above: it ends Serve
	served.Go(func() { stats.Serve(ln) })
	d.statsURL = "http://" + ln.Addr().String() + "/debug/qorb"
	d.view = &top{display: "demo", interval: time.Second}
	if !d.tui {
		for _, l := range d.tryLines() {
			fmt.Fprintln(d.out, l)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, d.duration)
	defer cancel()
	d.start = time.Now()

	var wg sync.WaitGroup
	for range d.workers {
		wg.Go(func() { d.work(ctx, db) })
	}
	if d.cluster != nil {
		wg.Go(func() { d.schedule(ctx) })
	}

	if d.tui {
		io.WriteString(d.out, "\x1b[?1049h\x1b[?25l") // alternate screen, no cursor
	}
	tick := time.NewTicker(time.Second)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			d.view.push(snapshot(connector))
			d.show()
		}
	}
	tick.Stop()
	if d.tui {
		io.WriteString(d.out, "\x1b[?25h\x1b[?1049l")
	}
	wg.Wait()
	final := snapshot(connector)
	d.summary(final)
	if d.appErrors.Load() > 0 {
		return 1
	}
	return 0
}

// work runs queries until ctx ends.
func (d *demo) work(ctx context.Context, db *sql.DB) {
	for ctx.Err() == nil {
		started := time.Now()
		// The workload's reads are safe to run twice: a read caught on
		// a backend as it dies runs again on another instead of failing.
		qctx, cancel := context.WithTimeout(qorb.Repeatable(ctx), 10*time.Second)
		var name string
		err := db.QueryRowContext(qctx, d.query).Scan(&name)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return // the demo is over; not the application's error
			}
			d.appErrors.Add(1)
			d.mu.Lock()
			d.lastErr = err.Error()
			d.mu.Unlock()
			continue
		}
		d.queries.Add(1)
		d.mu.Lock()
		s := d.served[name]
		if s == nil {
			s = &servedCount{}
			d.served[name] = s
		}
		after := name == d.stopped && started.After(d.stoppedAt)
		d.mu.Unlock()
		s.n.Add(1)
		if after {
			s.afterStop.Add(1)
		}
	}
}

// When the demo stops a backend and publishes a fourth, as fractions of
// its run (demoUsage says so).
const demoStopAt, demoAddAt = 0.35, 0.55

// schedule stops one backend at demoStopAt of the run and publishes a
// fourth at demoAddAt.
func (d *demo) schedule(ctx context.Context) {
	at := func(frac float64) bool {
		t := time.NewTimer(time.Until(d.start.Add(time.Duration(frac * float64(d.duration)))))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	if !at(demoStopAt) {
		return
	}
	victim := d.cluster.backends[1]
	d.note(fmt.Sprintf("stopping %s (%s)", victim.name, victim.addr))
	forced := victim.stop()
	d.mu.Lock()
	d.stopped, d.stoppedAt = victim.name, time.Now()
	d.mu.Unlock()
	msg := fmt.Sprintf("stopped %s: no longer accepts connections, its connections are closed", victim.name)
	if forced > 0 {
		msg += fmt.Sprintf(" (%d closed in the middle of a statement)", forced)
	}
	d.note(msg)
	if !at(demoAddAt) {
		return
	}
	b, err := d.cluster.add()
	if err != nil {
		d.note("could not start a fourth backend: " + err.Error())
		return
	}
	d.mu.Lock()
	d.added = b.name
	d.mu.Unlock()
	d.note(fmt.Sprintf("published %s (%s) in DNS", b.name, b.addr))
}

// syncWriter serialises writes: the demo's events and its view are
// written from different goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// note records what the demo did, with the time since it started.
func (d *demo) note(s string) {
	line := fmt.Sprintf("%5.1fs  %s", time.Since(d.start).Seconds(), s)
	d.mu.Lock()
	d.events = append(d.events, line)
	d.mu.Unlock()
	if !d.tui {
		fmt.Fprintln(d.out, line)
	}
}

// snapshot returns the connector's stats now, as statshttp.Handler serves
// them: the form "qorb top" reads.
func snapshot(c *qorb.Connector) *statshttp.Snapshot {
	st := statshttp.NewSnapshot(c.Stats(), time.Now())
	return &st
}

// tryLines say where the stats page and the DNS server are, and how to
// look at them from another terminal.
func (d *demo) tryLines() []string {
	lines := []string{"stats: qorb top " + d.statsURL + "   (or a browser)"}
	if d.cluster != nil {
		lines = append(lines, "DNS:   qorb resolve -server "+d.cluster.dns.Addr()+" _mysql._tcp."+demoName)
	}
	return lines
}

// show draws the view, or prints a plain line, for the last snapshot.
func (d *demo) show() {
	cur := d.view.cur
	elapsed := time.Since(d.start)
	d.mu.Lock()
	names := slices.Sorted(maps.Keys(d.served))
	rates := make([]string, 0, len(names))
	for _, n := range names {
		s := d.served[n]
		v := s.n.Load()
		rates = append(rates, fmt.Sprintf("%s=%d", n, v-s.lastN))
		s.lastN = v
	}
	lastErr, events := d.lastErr, slices.Clone(d.events)
	d.mu.Unlock()
	errs := d.appErrors.Load()

	if !d.tui {
		var slots []string
		for _, b := range cur.Backends {
			s := b.Slots
			slots = append(slots, fmt.Sprintf("%s %s idle=%d claimed=%d conn=%d backoff=%d",
				d.nameOf(b.Addr), b.Health, s.Idle, s.Claimed, s.Connecting, s.BackingOff))
		}
		fmt.Fprintf(d.out, "%5.1fs  queries/s %s  waiting %d  app errors %d  |  %s\n",
			elapsed.Seconds(), strings.Join(rates, " "), cur.Waiting, errs, strings.Join(slots, "; "))
		return
	}

	width, height := termSize()
	var lines []string
	add := func(s string) { lines = append(lines, wrap(s, width, 2)...) }
	add(fmt.Sprintf("\x1b[1mqorb demo\x1b[0m  %d workers  %s of %s  %s",
		d.workers, elapsed.Round(time.Second), d.duration, d.dsnShown()))
	errColor := "\x1b[32m"
	if errs > 0 {
		errColor = "\x1b[31m"
	}
	add(fmt.Sprintf("answers/s by backend  %s   application errors %s%d\x1b[0m  %s",
		strings.Join(rates, "  "), errColor, errs, lastErr))
	for _, l := range d.tryLines() {
		add("\x1b[2m" + l + "\x1b[22m")
	}
	add("")
	lines = append(lines, d.view.poolLines(width)...)
	add("")
	for _, e := range events {
		add(e)
	}
	paint(d.out, lines, "Ctrl-C ends the demo early", width, height)
}

// dsnShown is the DSN without its password or parameters.
func (d *demo) dsnShown() string {
	u, err := url.Parse(d.dsn)
	if err != nil {
		return ""
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// nameOf names a backend by its address: the embedded backend's name, or
// the address itself.
func (d *demo) nameOf(addr string) string {
	if d.cluster != nil {
		if n := d.cluster.nameOf(addr); n != "" {
			return n
		}
	}
	return addr
}

// summary prints the final lines, each "summary: key=value ...", so that
// a program can check them.
func (d *demo) summary(final *statshttp.Snapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "\nqorb demo: %d queries in %s from %d workers, %d errors seen by the application\n",
		d.queries.Load(), d.duration, d.workers, d.appErrors.Load())
	if d.lastErr != "" {
		fmt.Fprintf(d.out, "last application error: %s\n", d.lastErr)
	}
	type row struct{ name, addr, role string }
	var rows []row
	if d.cluster != nil {
		for _, b := range d.cluster.all() {
			role := "original"
			switch b.name {
			case d.stopped:
				role = "stopped"
			case d.added:
				role = "added"
			}
			rows = append(rows, row{b.name, b.addr, role})
		}
	} else {
		for _, n := range slices.Sorted(maps.Keys(d.served)) {
			rows = append(rows, row{n, n, "original"})
		}
	}
	for _, r := range rows {
		var n, after uint64
		if s := d.served[r.name]; s != nil {
			n, after = s.n.Load(), s.afterStop.Load()
		}
		health := "-"
		for _, b := range final.Backends {
			if b.Addr == r.addr {
				health = b.Health
			}
		}
		fmt.Fprintf(d.out, "summary: backend=%s addr=%s part=%s health=%s queries=%d queries_after_stop=%d\n",
			r.name, r.addr, r.role, health, n, after)
	}
	stoppedAt := "-"
	if !d.stoppedAt.IsZero() {
		stoppedAt = d.stoppedAt.Sub(d.start).Round(time.Millisecond).String()
	}
	fmt.Fprintf(d.out, "summary: queries=%d app_errors=%d stopped=%s stopped_at=%s added=%s\n",
		d.queries.Load(), d.appErrors.Load(), orDash(d.stopped), stoppedAt, orDash(d.added))
	fmt.Fprintf(d.out, "summary: claims=%d claim_wait_p50=%s claim_wait_p90=%s claim_wait_p99=%s claim_wait_max=%s\n",
		d.waits.count(), d.waits.quantile(0.5), d.waits.quantile(0.9), d.waits.quantile(0.99), d.waits.quantile(1))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// histogram counts durations in buckets an eighth of an octave wide, from
// 1 ns to about 18 minutes, without locks, for the claim wait percentiles.
type histogram struct {
	buckets [8*40 + 1]atomic.Uint64 // 0: no wait; i: up to 2^(i/8) ns
	n       atomic.Uint64
}

func (h *histogram) add(d time.Duration) {
	i := 0
	if d > 0 {
		i = min(len(h.buckets)-1, 1+int(math.Floor(8*math.Log2(float64(d)))))
	}
	h.buckets[i].Add(1)
	h.n.Add(1)
}

func (h *histogram) count() uint64 { return h.n.Load() }

// quantile returns the upper bound of the bucket that holds quantile q
// (0 < q ≤ 1), or 0 with no samples.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= want && seen > 0 {
			if i == 0 {
				return 0
			}
			return round3(time.Duration(math.Exp2(float64(i) / 8)))
		}
	}
	return round3(time.Duration(math.Exp2(float64(len(h.buckets)-1) / 8)))
}

// round3 rounds d to about three significant figures.
func round3(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for d/unit >= 1000 {
		unit *= 10
	}
	return d.Round(unit)
}
