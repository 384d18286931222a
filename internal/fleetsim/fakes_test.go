package fleetsim

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

func TestNextRetransmit(t *testing.T) {
	tests := []struct {
		elapsed, want time.Duration
	}{
		{0, time.Second},
		{500 * time.Millisecond, 500 * time.Millisecond},
		{time.Second, 0},
		{1500 * time.Millisecond, 1500 * time.Millisecond}, // next at 3 s
		{5 * time.Second, 2 * time.Second},                 // next at 7 s
		{8 * time.Second, 7 * time.Second},                 // next at 15 s
	}
	for _, tt := range tests {
		if got := nextRetransmit(tt.elapsed, time.Second); got != tt.want {
			t.Errorf("nextRetransmit(%v, 1s) = %v, want %v", tt.elapsed, got, tt.want)
		}
	}
}

// testConnector returns the connector of a fleet of three backends with
// no pools, and that fleet.
func testConnector(pol pool.Policy) (*connector, *Fleet) {
	f := newFleet(Config{Policy: pol}.withDefaults(), steady)
	return newConnector(f, 0), f
}

func TestConnectorCountsCapsAndDoubles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, f := testConnector(pool.Policy{MaxSlots: 2, MaxPerBackend: 1})
		a, b := f.backends[0].b, f.backends[1].b
		ctx := t.Context()
		c1, err := c.Connect(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Connect(ctx, b); err != nil {
			t.Fatal(err)
		}
		if n := f.violations.capExceeded.Load(); n != 0 {
			t.Fatalf("%d caps exceeded with one connection per backend and two in all", n)
		}
		c3, err := c.Connect(ctx, a) // a second to a, and a third in all
		if err != nil {
			t.Fatal(err)
		}
		if n := f.violations.capExceeded.Load(); n != 1 {
			t.Errorf("%d caps exceeded after a third connection, want 1", n)
		}
		c3.use.Store(connClaimed)
		if err := c.IsValid(ctx, c3); err == nil {
			t.Error("IsValid on a claimed connection passed")
		}
		if n := f.violations.doubled.Load(); n != 1 {
			t.Errorf("%d doubles after checking a claimed connection, want 1", n)
		}
		c3.use.Store(connFree)
		c.Close(c1)
		c.Close(c1)
		if n := f.violations.doubled.Load(); n != 2 {
			t.Errorf("%d doubles after closing a connection twice, want 2", n)
		}
		if got := f.backends[0].open.Load(); got != 1 {
			t.Errorf("%d connections open to a, want 1", got)
		}
	})
}

func TestBackendModes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, f := testConnector(pool.Policy{})
		b := f.backends[1]
		ctx := t.Context()

		old, err := c.Connect(ctx, b.b)
		if err != nil {
			t.Fatal(err)
		}
		b.setMode(Restarting)
		if err := c.IsValid(ctx, old); !errors.Is(err, errReset) {
			t.Errorf("IsValid after a restart = %v, want %v", err, errReset)
		}
		if _, err := c.Connect(ctx, b.b); !errors.Is(err, errRefused) {
			t.Errorf("Connect while restarting = %v, want %v", err, errRefused)
		}
		b.setMode(Up)
		cn, err := c.Connect(ctx, b.b)
		if err != nil {
			t.Fatalf("Connect after the restart: %v", err)
		}
		if err := c.IsValid(ctx, old); !errors.Is(err, errReset) {
			t.Errorf("IsValid of a connection from before the restart = %v, want %v", err, errReset)
		}

		b.setMode(Blackholed)
		tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		start := time.Now()
		if err := c.IsValid(tctx, cn); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("IsValid while blackholed = %v, want %v", err, context.DeadlineExceeded)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("IsValid while blackholed returned after %v, want the 3s timeout", d)
		}

		// A connection attempt sent 1.5 s before the blackhole ends gets
		// through with the retransmission at 3 s, and takes its
		// latency on top.
		done := make(chan error)
		start = time.Now()
		go func() {
			_, err := c.Connect(ctx, b.b)
			done <- err
		}()
		time.Sleep(1500 * time.Millisecond)
		b.setMode(Up)
		if err := <-done; err != nil {
			t.Fatalf("Connect across the blackhole's end: %v", err)
		}
		if d := time.Since(start); d < 3*time.Second+connectLatency[0] || d > 3*time.Second+connectLatency[1]+tick {
			t.Errorf("Connect across the blackhole's end took %v, want 3s plus its latency", d)
		}
		if n := f.violations.doubled.Load() + f.violations.capExceeded.Load(); n != 0 {
			t.Errorf("%d violations", n)
		}
	})
}

func TestResolverKeepsSetThroughOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(Config{}.withDefaults(), add)
		r := &dnsResolver{f: f, rng: rand.New(rand.NewPCG(1, 2))}
		ctx, cancel := context.WithCancel(t.Context())
		var updates [][]resolver.Backend
		done := make(chan error)
		go func() {
			done <- r.Run(ctx, resolver.UpdateFunc(func(bs []resolver.Backend) { updates = append(updates, bs) }))
		}()

		time.Sleep(time.Minute) // unchanged: reported once
		f.dns.setDown(true)
		before := queries(f)
		time.Sleep(10 * time.Second) // retries after 0.5, 1, 2, 4 s, each up to a tenth more
		if n := queries(f) - before; n != 4 {
			t.Errorf("%d lookups in the first 10 s of an outage, want 4", n)
		}
		time.Sleep(time.Minute)
		f.dns.setDown(false)
		f.dns.add(f.backends[fourth].b)
		time.Sleep(dnsRetryMax + dnsRetryMax/dnsJitterPart + dnsLatency)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want %v", err, context.Canceled)
		}
		if len(updates) != 2 || len(updates[0]) != 3 || len(updates[1]) != 4 {
			t.Errorf("updates %v, want the 3 backends, then the 4 once DNS answered again", updates)
		}
	})
}

func queries(f *Fleet) int64 {
	var n int64
	for s := range f.dns.queries {
		n += f.dns.queries.at(s)
	}
	return n
}
