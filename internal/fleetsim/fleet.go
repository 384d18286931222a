package fleetsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/pool"
)

// Config says how big the fleet is and how its workers behave. The zero
// value of a field means its default.
type Config struct {
	// Pools is the number of pools. Default 1,000.
	Pools int
	// Workers is the number of workers per pool. Default 4.
	Workers int
	// Hold and Think are the mean times a worker holds a claim and waits
	// between claims; each is drawn uniformly from half to one and a half
	// times its mean. Defaults 100 ms and 300 ms: with 4 workers, one
	// busy connection per pool on average, and 10 claims a second. (The
	// figures depend on how many connections are busy, hardly on how
	// often they are claimed; every claim costs the simulation tens of
	// microseconds.)
	Hold, Think time.Duration
	// OpTimeout bounds a worker's claim and query together, as an
	// application's request timeout would. Default 10 s.
	OpTimeout time.Duration
	// Stagger spreads the pools' start times over this long, as a fleet
	// deployed over time would be, so that their periodic timers are not
	// in step. Default pool.DefaultRebalanceInterval.
	Stagger time.Duration
	// Timing sets the scenarios' phases.
	Timing Timing
	// Seed seeds the fakes' random draws.
	Seed uint64
	// Policy is the policy every pool gets (its Observer is replaced).
	// The zero value is the default policy.
	Policy pool.Policy
}

// Timing sets the phases of a scenario. The zero value of a field means
// its default.
type Timing struct {
	// Warmup runs before the scenario's event; it includes the Stagger
	// over which the pools start. Default 20 s.
	Warmup time.Duration
	// Fault is how long a fault (restart, blackhole, DNS outage) lasts,
	// and how long the steady scenario measures. Default 60 s.
	Fault time.Duration
	// After is how long the fleet is watched after a fault ends; two
	// thirds of it after a backend is added or removed, a third after a
	// DNS outage. Default 90 s.
	After time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Pools == 0 {
		c.Pools = 1000
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	def(&c.Hold, 100*time.Millisecond)
	def(&c.Think, 300*time.Millisecond)
	def(&c.OpTimeout, 10*time.Second)
	def(&c.Stagger, pool.DefaultRebalanceInterval)
	def(&c.Timing.Warmup, 20*time.Second)
	def(&c.Timing.Fault, time.Minute)
	def(&c.Timing.After, 90*time.Second)
	return c
}

// Fleet is one run of a scenario: the pools, their workers, the fake
// backends and DNS, and what they counted.
type Fleet struct {
	cfg      Config
	sc       Scenario
	start    time.Time // when the first pool started
	length   time.Duration
	backends []*backend
	dns      dns
	members  []*member

	maxSlots, maxPerBackend int

	// failed counts failed claims per second, and queryFailed failed
	// queries on claimed connections.
	failed, queryFailed series
	// useFrom and offFrom are, per backend, when the scenario started
	// watching for each pool's first claim on it and for each pool
	// declaring it offline (time since start, 0: not watching).
	useFrom, offFrom []atomic.Int64

	workers sync.WaitGroup
	// stopping tells the workers to stop after their current claim.
	stopping atomic.Bool

	violations struct {
		capExceeded, doubled, lost atomic.Int64
	}
}

// member is one pool of the fleet.
type member struct {
	f    *Fleet
	p    *pool.Pool[*conn]
	conn *connector
	// Per backend: since the last watch, the first claim it served and
	// when the pool declared it offline (time since start, 0: not yet).
	firstUse, offlineAt []atomic.Int64
	offline             []atomic.Bool
}

// Run runs scenario sc with cfg and returns its report. It must be called
// inside a testing/synctest bubble; it returns when every pool is closed.
// It fails only for a policy [pool.New] rejects.
func Run(cfg Config, sc Scenario) (*Report, error) {
	cfg = cfg.withDefaults()
	f := newFleet(cfg, sc)
	for i := range cfg.Pools {
		f.sleepUntil(cfg.Stagger * time.Duration(i) / time.Duration(cfg.Pools))
		m, err := f.startMember(i)
		if err != nil {
			f.stop()
			return nil, err
		}
		for w := range cfg.Workers {
			rng := rand.New(rand.NewPCG(cfg.Seed, 1<<40|uint64(i)<<8|uint64(w)))
			f.workers.Go(func() { m.work(rng) })
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var sampler sync.WaitGroup
	sampler.Go(func() { f.sample(ctx) })

	sc.script(f)
	rep := &Report{Scenario: sc.Name, Summary: sc.summary(cfg.Timing), Pools: cfg.Pools, fleet: f}
	rep.Figures = sc.figures(f)
	stop()
	sampler.Wait()

	f.stop()
	rep.Violations = Violations{
		CapExceeded: f.violations.capExceeded.Load(),
		Doubled:     f.violations.doubled.Load(),
		Lost:        f.violations.lost.Load(),
	}
	for _, m := range f.members {
		m.conn.mu.Lock()
		rep.MaxSlots = max(rep.MaxSlots, m.conn.maxTotal)
		rep.MaxPerBackend = max(rep.MaxPerBackend, m.conn.maxPer)
		m.conn.mu.Unlock()
	}
	return rep, nil
}

// stop lifts every fault, stops the workers and checks that every claim
// came back, then closes the pools and checks that every connection was
// closed.
func (f *Fleet) stop() {
	for _, b := range f.backends {
		b.setMode(Up)
	}
	f.dns.setDown(false)
	f.stopping.Store(true)
	f.workers.Wait()
	var closing sync.WaitGroup
	for _, m := range f.members {
		st := m.p.Stats()
		for _, b := range st.Backends {
			f.violations.lost.Add(int64(b.Claimed))
		}
		f.violations.lost.Add(int64(st.Waiting))
		closing.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := m.p.Shutdown(ctx); err != nil {
				f.violations.lost.Add(1)
			}
		})
	}
	closing.Wait()
	for _, m := range f.members {
		m.conn.mu.Lock()
		f.violations.lost.Add(int64(m.conn.total))
		m.conn.mu.Unlock()
	}
}

// newFleet sets up the backends and DNS of sc, with no pool yet. The
// clock starts now, with the first pool; the warmup counts from it.
func newFleet(cfg Config, sc Scenario) *Fleet {
	f := &Fleet{cfg: cfg, sc: sc, length: sc.length(cfg.Timing), start: time.Now()}
	seconds := int(f.length/time.Second) + 2
	f.failed = newSeries(seconds)
	f.queryFailed = newSeries(seconds)
	f.dns.queries = newSeries(seconds)
	f.useFrom = make([]atomic.Int64, sc.backends)
	f.offFrom = make([]atomic.Int64, sc.backends)
	for i := range sc.backends {
		f.backends = append(f.backends, newBackend(i, seconds))
	}
	for _, b := range f.backends[:sc.initial] {
		f.dns.add(b.b)
	}
	f.maxSlots = cmp.Or(cfg.Policy.MaxSlots, pool.DefaultMaxSlots)
	f.maxPerBackend = cmp.Or(cfg.Policy.MaxPerBackend, pool.DefaultMaxPerBackend)
	return f
}

// startMember starts pool i.
func (f *Fleet) startMember(i int) (*member, error) {
	n := len(f.backends)
	m := &member{
		f:         f,
		conn:      newConnector(f, uint64(i)),
		firstUse:  make([]atomic.Int64, n),
		offlineAt: make([]atomic.Int64, n),
		offline:   make([]atomic.Bool, n),
	}
	pol := f.cfg.Policy
	pol.Observer = pool.ObserverFunc(m.observe)
	r := &dnsResolver{f: f, rng: rand.New(rand.NewPCG(f.cfg.Seed, 1<<32|uint64(i)))}
	p, err := pool.New(r, m.conn, pol)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	m.p = p
	f.members = append(f.members, m)
	return m, nil
}

// elapsed returns the time since the fleet started, at least 1 ns, so
// that zero can mean "not yet".
func (f *Fleet) elapsed() int64 { return max(int64(time.Since(f.start)), 1) }

// second returns the second of the simulation it is now.
func (f *Fleet) second() int { return int(time.Since(f.start) / time.Second) }

// backendAt returns the backend with address addr, or nil.
func (f *Fleet) backendAt(addr string) *backend {
	for _, b := range f.backends {
		if b.b.Addr == addr {
			return b
		}
	}
	return nil
}

// sleepUntil waits until d after the start.
func (f *Fleet) sleepUntil(d time.Duration) {
	time.Sleep(time.Until(f.start.Add(d)))
}

// watchUse starts watching, in every pool, for the first claim b serves.
func (f *Fleet) watchUse(b *backend) {
	for _, m := range f.members {
		m.firstUse[b.idx].Store(0)
	}
	f.useFrom[b.idx].Store(f.elapsed())
}

// watchOffline starts watching, in every pool, for b being declared
// offline.
func (f *Fleet) watchOffline(b *backend) {
	for _, m := range f.members {
		m.offlineAt[b.idx].Store(0)
	}
	f.offFrom[b.idx].Store(f.elapsed())
}

// work claims, holds and releases until the fleet stops. (It watches a
// flag, not a context: thousands of workers waiting on one context's
// channel would cost the simulation more than the pools do.)
func (m *member) work(rng *rand.Rand) {
	f := m.f
	around := func(mean time.Duration) time.Duration {
		return mean/2 + time.Duration(rng.Int64N(int64(mean)+1))
	}
	for !f.stopping.Load() {
		time.Sleep(until(around(f.cfg.Think)))
		opCtx, cancel := context.WithTimeout(context.Background(), f.cfg.OpTimeout)
		c, err := m.p.Claim(opCtx)
		if err != nil {
			cancel()
			f.failed.add(f.second(), 1)
			continue
		}
		cn := c.Conn()
		if !cn.use.CompareAndSwap(connFree, connClaimed) {
			// Handed out twice, or after it was closed.
			f.violations.doubled.Add(1)
			cancel()
			c.Discard(errors.New("fleetsim: connection handed out while in use"))
			continue
		}
		b := cn.b
		b.claims.add(f.second(), 1)
		if f.useFrom[b.idx].Load() != 0 {
			m.firstUse[b.idx].CompareAndSwap(0, f.elapsed())
		}
		if b.state.Load().mode == Blackholed {
			b.faultClaim.Store(f.elapsed())
			b.faultClaims.Add(1)
		}
		b.inflight.Add(1)
		err = b.serve(opCtx, cn.gen, around(f.cfg.Hold))
		b.inflight.Add(-1)
		cancel()
		cn.use.Store(connFree)
		if err != nil {
			f.queryFailed.add(f.second(), 1)
			c.Discard(err)
		} else {
			c.Release()
		}
	}
}

// observe takes the pool's events: when it declares a backend offline or
// online again.
func (m *member) observe(e pool.Event) {
	switch e.Kind {
	case pool.EventBackendOffline, pool.EventBackendOnline, pool.EventBackendRemoved:
	default:
		return
	}
	b := m.f.backendAt(e.Backend.Addr)
	if b == nil {
		return
	}
	if e.Kind == pool.EventBackendOffline {
		if !m.offline[b.idx].Swap(true) {
			b.offlinePools.Add(1)
		}
		if m.f.offFrom[b.idx].Load() != 0 {
			m.offlineAt[b.idx].CompareAndSwap(0, m.f.elapsed())
		}
		return
	}
	if m.offline[b.idx].Swap(false) {
		b.offlinePools.Add(-1)
	}
}

// sample records the gauges at the start of every second until ctx ends.
func (f *Fleet) sample(ctx context.Context) {
	for s := f.second() + 1; ; s++ {
		if wait(ctx, time.Until(f.start.Add(time.Duration(s)*time.Second))) != nil {
			return
		}
		for _, b := range f.backends {
			b.conns.set(s, b.open.Load())
			b.offline.set(s, b.offlinePools.Load())
			b.busy.set(s, b.inflight.Load())
		}
	}
}

// series counts something per second of the simulation.
type series []atomic.Int64

func newSeries(seconds int) series { return make(series, seconds) }

func (s series) add(i int, n int64) {
	if i >= 0 && i < len(s) {
		s[i].Add(n)
	}
}

func (s series) set(i int, n int64) {
	if i >= 0 && i < len(s) {
		s[i].Store(n)
	}
}

// at returns the count of second i, 0 outside the series.
func (s series) at(i int) int64 {
	if i >= 0 && i < len(s) {
		return s[i].Load()
	}
	return 0
}
