package fleetsim

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

// The fake DNS's answer: its TTL and lookup latency, and the retry backoff
// of the resolvers, which follow srv.Resolver's defaults and draw.
const (
	dnsTTL        = 5 * time.Second
	dnsLatency    = time.Millisecond
	dnsRetryMin   = srv.DefaultRetryMin
	dnsRetryMax   = srv.DefaultRetryMax
	dnsJitterPart = 10 // up to a tenth added to the TTL at random, as srv.Resolver does
)

var errDNSDown = errors.New("fleetsim: name server not answering")

// dns is the name server every pool's resolver asks.
type dns struct {
	mu   sync.Mutex
	set  []resolver.Backend
	down bool

	queries series
}

func (d *dns) lookup(sec int) ([]resolver.Backend, error) {
	d.queries.add(sec, 1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return nil, errDNSDown
	}
	return slices.Clone(d.set), nil
}

func (d *dns) add(b resolver.Backend) {
	d.mu.Lock()
	d.set = append(d.set, b)
	d.mu.Unlock()
}

func (d *dns) remove(b resolver.Backend) {
	d.mu.Lock()
	d.set = slices.DeleteFunc(d.set, func(x resolver.Backend) bool { return x.Key() == b.Key() })
	d.mu.Unlock()
}

func (d *dns) setDown(down bool) {
	d.mu.Lock()
	d.down = down
	d.mu.Unlock()
}

// dnsResolver is one pool's resolver. It behaves as srv.Resolver does with
// its defaults: it looks the name up again when the TTL runs out, reports
// the set only when it changed, and after a failed lookup keeps the last
// set and retries with a fully jittered exponential backoff.
type dnsResolver struct {
	f   *Fleet
	rng *rand.Rand // used by Run's goroutine only
}

// retryWait draws the wait after the nth failed lookup in a row as
// srv.Resolver does: uniformly between its RetryMin and the lesser of
// RetryMin·2ⁿ and RetryMax.
func (r *dnsResolver) retryWait(n int) time.Duration {
	ceil := min(dnsRetryMin<<min(n, 16), dnsRetryMax)
	return dnsRetryMin + time.Duration(r.rng.Int64N(int64(ceil-dnsRetryMin)+1))
}

func (r *dnsResolver) jitter(d time.Duration) time.Duration {
	return d + time.Duration(r.rng.Int64N(int64(d)/dnsJitterPart+1))
}

// Run implements [resolver.Resolver].
func (r *dnsResolver) Run(ctx context.Context, rc resolver.Receiver) error {
	var (
		last      []resolver.Backend
		published bool
		failures  int
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		if err := wait(ctx, dnsLatency); err != nil {
			return err
		}
		set, err := r.f.dns.lookup(r.f.second())
		if err != nil {
			failures++
			rc.Report(err)
			timer.Reset(r.retryWait(failures))
			continue
		}
		failures = 0
		if !published || !slices.Equal(last, set) {
			published, last = true, set
			rc.Update(slices.Clone(set))
		}
		rc.Report(nil)
		timer.Reset(r.jitter(dnsTTL))
	}
}

var _ resolver.Resolver = (*dnsResolver)(nil)
