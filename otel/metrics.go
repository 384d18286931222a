// Package qorbotel exports a qorb pool's metrics through OpenTelemetry,
// named as the semantic conventions for database client connection pools
// name them. It lives in its own module, so that programs that do not use
// OpenTelemetry do not download it.
//
// A [Metrics] serves one pool. It is the pool's [pool.Observer], which
// times connection attempts, waits and claims as they happen, and
// [Metrics.Register] reads the pool's stats each time the metrics are
// collected:
//
//	cfg, err := qorb.ParseDSN(dsn)
//	m, err := qorbotel.NewMetrics(meterProvider, "orders")
//	cfg.Policy.Observer = m
//	c, err := qorb.NewConnector(cfg)
//	reg, err := m.Register(c)
//	defer reg.Unregister()
//	db := sql.OpenDB(c)
//
// The metrics, all with the attribute db.client.connection.pool.name:
//
//   - db.client.connection.count ({connection}), by
//     db.client.connection.state (idle or used), qorb.backend and
//     qorb.backend.role: the connections idle and claimed at each backend.
//   - db.client.connection.max ({connection}): the pool's cap on
//     connections across all backends.
//   - db.client.connection.pending_requests ({request}): the claims
//     waiting for a connection.
//   - db.client.connection.timeouts ({timeout}): the claims that failed
//     because their wait ran out (the claim timeout or their context).
//   - db.client.connection.create_time (s), by qorb.backend: how long each
//     successful connection attempt took.
//   - db.client.connection.wait_time (s), by qorb.backend: how long each
//     claim that got a connection waited for it; zero when one was idle.
//   - db.client.connection.use_time (s), by qorb.backend: how long each
//     claim held its connection.
//
// and two of qorb's own, with the same attribute:
//
//   - qorb.client.connection.leaks ({claim}): the claims held past the
//     pool's leak threshold (Policy.LeakThreshold, pool_leak_threshold),
//     each counted once.
//   - qorb.resolver.failures ({lookup}): the resolver's lookups that found
//     no usable backends (a DNS failure, say).
//
// qorb.backend is the backend's address, as "host@addr" when its name is
// not the address's host (see [resolver.Key.String]); qorb.backend.role is
// "primary", "replica" or "unknown".
package qorbotel

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// ScopeName is the instrumentation scope of the meter the metrics come
// from.
const ScopeName = "github.com/qorb-go/qorb/otel"

// The attribute keys.
const (
	// PoolNameKey names the pool, as given to [NewMetrics].
	PoolNameKey = attribute.Key("db.client.connection.pool.name")
	// StateKey is the state of the connections counted by
	// db.client.connection.count: "idle" or "used".
	StateKey = attribute.Key("db.client.connection.state")
	// BackendKey is the backend's address.
	BackendKey = attribute.Key("qorb.backend")
	// RoleKey is the backend's role: "primary", "replica" or "unknown".
	RoleKey = attribute.Key("qorb.backend.role")
)

// bucketsSeconds are the histograms' default bucket boundaries: those the
// conventions advise for db.client.operation.duration, with finer ones
// below a millisecond, where most waits for an idle connection fall, and
// coarser ones for connections held long.
var bucketsSeconds = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}

// Pool is what [Metrics.Register] reads: a *qorb.Connector or a
// *pool.Pool.
type Pool interface {
	Stats() pool.Stats
}

// Metrics records one pool's metrics. Make it with [NewMetrics], put it in
// the pool's Policy.Observer and [Metrics.Register] the pool. It is safe
// for concurrent use.
type Metrics struct {
	meter     metric.Meter
	poolAttr  attribute.KeyValue
	poolOpt   metric.MeasurementOption // the pool name alone
	poolAdd   []metric.AddOption       // poolOpt, made once
	idleState attribute.KeyValue
	usedState attribute.KeyValue

	count, max, pending           metric.Int64ObservableUpDownCounter
	timeouts, leaks, lookupFails  metric.Int64Counter
	createTime, waitTime, useTime metric.Float64Histogram

	// backends holds each backend's record options, so that recording
	// does not allocate. It is copied on write, under backendsMu.
	backends   atomic.Pointer[map[resolver.Key][]metric.RecordOption]
	backendsMu sync.Mutex
}

var _ pool.Observer = (*Metrics)(nil)

// NewMetrics makes the instruments for the pool named poolName, which
// should be unique within the program, from mp's meter [ScopeName]; nil
// means the global meter provider.
func NewMetrics(mp metric.MeterProvider, poolName string) (*Metrics, error) {
	if poolName == "" {
		return nil, errors.New("qorbotel: NewMetrics needs a pool name")
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := &Metrics{
		meter:     mp.Meter(ScopeName),
		poolAttr:  PoolNameKey.String(poolName),
		idleState: StateKey.String("idle"),
		usedState: StateKey.String("used"),
	}
	m.poolOpt = metric.WithAttributeSet(attribute.NewSet(m.poolAttr))
	m.poolAdd = []metric.AddOption{m.poolOpt}
	m.backends.Store(&map[resolver.Key][]metric.RecordOption{})

	var errs [9]error
	m.count, errs[0] = m.meter.Int64ObservableUpDownCounter("db.client.connection.count",
		metric.WithUnit("{connection}"),
		metric.WithDescription("The number of connections that are currently in state described by the `state` attribute."))
	m.max, errs[1] = m.meter.Int64ObservableUpDownCounter("db.client.connection.max",
		metric.WithUnit("{connection}"),
		metric.WithDescription("The maximum number of open connections allowed."))
	m.pending, errs[2] = m.meter.Int64ObservableUpDownCounter("db.client.connection.pending_requests",
		metric.WithUnit("{request}"),
		metric.WithDescription("The number of current pending requests for an open connection."))
	counter := func(name, unit, desc string) (metric.Int64Counter, error) {
		return m.meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	m.timeouts, errs[3] = counter("db.client.connection.timeouts", "{timeout}",
		"The number of connection timeouts that have occurred trying to obtain a connection from the pool.")
	hist := func(name, desc string) (metric.Float64Histogram, error) {
		return m.meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(bucketsSeconds...))
	}
	m.createTime, errs[4] = hist("db.client.connection.create_time", "The time it took to create a new connection.")
	m.waitTime, errs[5] = hist("db.client.connection.wait_time", "The time it took to obtain an open connection from the pool.")
	m.useTime, errs[6] = hist("db.client.connection.use_time", "The time between borrowing a connection and returning it to the pool.")
	m.leaks, errs[7] = counter("qorb.client.connection.leaks", "{claim}",
		"The number of claims held past the pool's leak threshold.")
	m.lookupFails, errs[8] = counter("qorb.resolver.failures", "{lookup}",
		"The number of the resolver's lookups that found no usable backends.")
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records the durations an event carries, and counts claim
// timeouts, leaks and failed lookups. The pool calls it; it does not
// block and, once a backend has been seen, does not allocate.
func (m *Metrics) Observe(e pool.Event) {
	ctx := context.Background()
	switch e.Kind {
	case pool.EventClaim:
		m.waitTime.Record(ctx, e.Duration.Seconds(), m.backendOpts(e.Backend)...)
	case pool.EventRelease:
		m.useTime.Record(ctx, e.Duration.Seconds(), m.backendOpts(e.Backend)...)
	case pool.EventConnect:
		m.createTime.Record(ctx, e.Duration.Seconds(), m.backendOpts(e.Backend)...)
	case pool.EventClaimFailed:
		if errors.Is(e.Err, pool.ErrClaimTimeout) {
			m.timeouts.Add(ctx, 1, m.poolAdd...)
		}
	case pool.EventBackendRemoved:
		m.forget(e.Backend)
	case pool.EventLeak:
		m.leaks.Add(ctx, 1, m.poolAdd...)
	case pool.EventResolverFailed:
		m.lookupFails.Add(ctx, 1, m.poolAdd...)
	}
}

// backendOpts returns the record options that carry the attributes of
// backend k. The map is copied on write: backends change seldom, and
// events are many.
func (m *Metrics) backendOpts(k resolver.Key) []metric.RecordOption {
	if opts, ok := (*m.backends.Load())[k]; ok {
		return opts
	}
	m.backendsMu.Lock()
	defer m.backendsMu.Unlock()
	old := *m.backends.Load()
	if opts, ok := old[k]; ok {
		return opts
	}
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(m.poolAttr, BackendKey.String(k.String())))}
	next := make(map[resolver.Key][]metric.RecordOption, len(old)+1)
	for key, v := range old {
		next[key] = v
	}
	next[k] = opts
	m.backends.Store(&next)
	return opts
}

// forget drops what backendOpts keeps for a backend the pool no longer
// has.
func (m *Metrics) forget(k resolver.Key) {
	m.keepOnly(func(key resolver.Key) bool { return key != k })
}

// keepOnly drops what backendOpts keeps for the backends keep rejects.
func (m *Metrics) keepOnly(keep func(resolver.Key) bool) {
	drop := false
	for key := range *m.backends.Load() {
		drop = drop || !keep(key)
	}
	if !drop {
		return
	}
	m.backendsMu.Lock()
	defer m.backendsMu.Unlock()
	old := *m.backends.Load()
	next := make(map[resolver.Key][]metric.RecordOption, len(old))
	for key, v := range old {
		if keep(key) {
			next[key] = v
		}
	}
	if len(next) != len(old) {
		m.backends.Store(&next)
	}
}

// Register has the connection counts, the cap and the waiting claims read
// from p's stats each time the metrics are collected, until the returned
// registration is unregistered. Register a pool once, with the Metrics
// that observes it.
func (m *Metrics) Register(p Pool) (metric.Registration, error) {
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := p.Stats()
		// A connection held when its backend was removed is released
		// later: forget such backends here.
		m.keepOnly(func(k resolver.Key) bool {
			return slices.ContainsFunc(st.Backends, func(b pool.BackendStats) bool { return b.Backend.Key() == k })
		})
		o.ObserveInt64(m.max, int64(st.MaxSlots), m.poolOpt)
		o.ObserveInt64(m.pending, int64(st.Waiting), m.poolOpt)
		for _, b := range st.Backends {
			backend := BackendKey.String(b.Backend.Key().String())
			role := RoleKey.String(b.Backend.Role.String())
			o.ObserveInt64(m.count, int64(b.Idle), metric.WithAttributes(m.poolAttr, backend, role, m.idleState))
			o.ObserveInt64(m.count, int64(b.Claimed), metric.WithAttributes(m.poolAttr, backend, role, m.usedState))
		}
		return nil
	}, m.count, m.max, m.pending)
}
