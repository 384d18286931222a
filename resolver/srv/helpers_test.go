package srv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

// fast is a configuration with short intervals, so that tests see several
// lookups in well under a second.
func fast(servers ...string) srv.Config {
	return srv.Config{
		Servers:      servers,
		QueryTimeout: time.Second,
		MinRefresh:   20 * time.Millisecond,
		MaxRefresh:   200 * time.Millisecond,
		RetryMin:     10 * time.Millisecond,
		RetryMax:     80 * time.Millisecond,
	}
}

// recorder runs an SRV resolver and records what it reports.
type recorder struct {
	mu      sync.Mutex
	updates [][]resolver.Backend
	reports []error // what Run reported after each lookup
	events  []srv.Event
	changed chan struct{}   // signalled (without blocking) after each record
	onEvent func(srv.Event) // called after recording an event; set under mu
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) observe(ev srv.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	hook := r.onEvent
	r.mu.Unlock()
	if hook != nil {
		hook(ev)
	}
	r.signal()
}

// Update records a set: the recorder is the Receiver Run reports to.
func (r *recorder) Update(set []resolver.Backend) {
	r.mu.Lock()
	r.updates = append(r.updates, set)
	r.mu.Unlock()
	r.signal()
}

// Report records a lookup's outcome.
func (r *recorder) Report(err error) {
	r.mu.Lock()
	r.reports = append(r.reports, err)
	r.mu.Unlock()
	r.signal()
}

// lastReport returns the last outcome reported, and whether there was one.
func (r *recorder) lastReport() (error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reports) == 0 {
		return nil, false
	}
	return r.reports[len(r.reports)-1], true
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// snapshot returns copies of what has been recorded so far.
func (r *recorder) snapshot() ([][]resolver.Backend, []srv.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates), slices.Clone(r.events)
}

// count returns how many events of kind k have been recorded.
func (r *recorder) count(k srv.EventKind) int {
	_, evs := r.snapshot()
	n := 0
	for _, ev := range evs {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// last returns the last update, and whether there was one.
func (r *recorder) last() ([]resolver.Backend, bool) {
	ups, _ := r.snapshot()
	if len(ups) == 0 {
		return nil, false
	}
	return ups[len(ups)-1], true
}

// waitFor waits until cond holds, checking after each record, and fails
// the test after timeout.
func (r *recorder) waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-r.changed:
		case <-deadline.C:
			ups, evs := r.snapshot()
			t.Fatalf("after %v, still waiting for %s\nupdates: %v\nevents: %s", timeout, what, ups, describe(evs))
		}
	}
}

// waitSet waits until the last update is want (as keys(set) gives them)
// and its EventUpdate has been observed.
func (r *recorder) waitSet(t testing.TB, timeout time.Duration, want ...string) {
	t.Helper()
	r.waitFor(t, timeout, fmt.Sprintf("set %v", want), func() bool {
		ups, _ := r.snapshot()
		// The update event follows the update: wait for it too.
		return len(ups) > 0 && slices.Equal(keys(ups[len(ups)-1]), want) &&
			r.count(srv.EventUpdate) == len(ups)
	})
}

// start runs an SRV resolver for name with cfg until the test ends, and
// records what it reports, before cfg.Observer, if any, is told. The returned stop function cancels it and
// waits for Run to return, and returns what Run returned.
func start(t testing.TB, name string, cfg srv.Config) (*recorder, func() error) {
	t.Helper()
	rec := newRecorder()
	if also := cfg.Observer; also != nil {
		cfg.Observer = srv.ObserverFunc(func(ev srv.Event) {
			rec.observe(ev)
			also.Observe(ev)
		})
	} else {
		cfg.Observer = srv.ObserverFunc(rec.observe)
	}
	r, err := srv.New(name, cfg)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, rec) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				runErr = errors.New("Run did not return within 5s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return rec, stop
}

// keys returns the backends as "host@addr prio/weight" strings.
func keys(bs []resolver.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = fmt.Sprintf("%s %d/%d", b.Key(), b.Priority, b.Weight)
	}
	return out
}

func describe(evs []srv.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %s server=%s records=%d next=%v err=%v", ev.Kind, ev.Server, len(ev.Records), ev.Next, ev.Err)
	}
	return b.String()
}

// simple sets up one service with two targets on s.
func simple(s *dnstest.Server, name string, ttl uint32) {
	s.SetSRV(name,
		dnstest.SRV{Priority: 0, Weight: 10, Port: 5432, Target: "pg1.db.test", TTL: ttl},
		dnstest.SRV{Priority: 0, Weight: 20, Port: 5432, Target: "pg2.db.test", TTL: ttl})
	s.SetA("pg1.db.test", ttl, "127.0.0.1")
	s.SetA("pg2.db.test", ttl, "127.0.0.2")
}

// deadPort returns a loopback UDP address nobody listens on.
func deadPort(t testing.TB) string {
	t.Helper()
	s, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// checkNoResolverGoroutines fails the test if a goroutine is still running
// code of the SRV resolver, after giving goroutines that have just
// finished their work up to a second to exit.
func checkNoResolverGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		var left [][]byte
		for _, g := range bytes.Split(buf[:n], []byte("\n\n")) {
			if bytes.Contains(g, []byte("srv.(*Resolver)")) {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the resolver still running:\n%s", len(left), bytes.Join(left, []byte("\n\n")))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
