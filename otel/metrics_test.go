package qorbotel_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/qorb-go/qorb"
	qorbotel "github.com/qorb-go/qorb/otel"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// fakeOpener opens fakeConns, which need no server. Each backend reports
// the role the resolver gave it.
type fakeOpener struct{}

func (fakeOpener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	return fakeConn{role: b.Role}, nil
}
func (fakeOpener) Ping(context.Context, driver.Conn) error          { return nil }
func (fakeOpener) Recycle(context.Context, driver.Conn, bool) error { return nil }
func (fakeOpener) Role(_ context.Context, c driver.Conn) (resolver.Role, error) {
	return c.(fakeConn).role, nil
}

// fakeConn is a connection nothing is ever run on.
type fakeConn struct{ role resolver.Role }

func (fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no statements") }
func (fakeConn) Close() error                        { return nil }
func (fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake: no transactions") }

var (
	primary = resolver.Backend{Host: "db1", Addr: "10.0.0.1:5432", Role: resolver.RolePrimary}
	replica = resolver.Backend{Host: "db2", Addr: "10.0.0.2:5432", Role: resolver.RoleReplica}
)

// newConnector starts a connector over two fake backends, with at most
// two connections to each, that reports to m, and waits until all four
// connections are open and idle.
func newConnector(t *testing.T, m *qorbotel.Metrics) *qorb.Connector {
	t.Helper()
	r, err := resolver.NewStatic(primary, replica)
	if err != nil {
		t.Fatal(err)
	}
	cfg := qorb.Config{Opener: fakeOpener{}, Resolver: r}
	cfg.Policy = pool.Policy{MaxSlots: 4, MaxPerBackend: 2, Observer: m}
	c, err := qorb.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	synctest.Wait()
	st := c.Stats()
	if len(st.Backends) != 2 || st.Backends[0].Idle != 2 || st.Backends[1].Idle != 2 {
		t.Fatalf("pool did not open 2 idle connections to each of 2 backends: %+v", st)
	}
	return c
}

// collect reads the metrics, by name.
func collect(t *testing.T, r sdkmetric.Reader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != qorbotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, qorbotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// has reports whether set has every one of kvs.
func has(set attribute.Set, kvs ...attribute.KeyValue) bool {
	for _, kv := range kvs {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum adds up the points of an int64 sum metric with the attributes kvs.
func sum(t *testing.T, ms map[string]metricdata.Metrics, name string, kvs ...attribute.KeyValue) int64 {
	t.Helper()
	d, ok := ms[name].Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: data %T, want metricdata.Sum[int64]", name, ms[name].Data)
	}
	var n int64
	for _, p := range d.DataPoints {
		if has(p.Attributes, kvs...) {
			n += p.Value
		}
	}
	return n
}

// count adds up the counts of a histogram's points with the attributes
// kvs, and returns their sum of values too.
func count(t *testing.T, ms map[string]metricdata.Metrics, name string, kvs ...attribute.KeyValue) (n uint64, total float64) {
	t.Helper()
	d, ok := ms[name].Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data %T, want metricdata.Histogram[float64]", name, ms[name].Data)
	}
	for _, p := range d.DataPoints {
		if has(p.Attributes, kvs...) {
			n += p.Count
			total += p.Sum
		}
	}
	return n, total
}

var (
	poolName = qorbotel.PoolNameKey.String("orders")
	idle     = qorbotel.StateKey.String("idle")
	used     = qorbotel.StateKey.String("used")
)

func TestMetricsCountKnownTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		m, err := qorbotel.NewMetrics(mp, "orders")
		if err != nil {
			t.Fatal(err)
		}
		c := newConnector(t, m)
		reg, err := m.Register(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()

		ms := collect(t, reader)
		if n, _ := count(t, ms, "db.client.connection.create_time", poolName); n != 4 {
			t.Errorf("create_time count = %d, want 4 (connections opened)", n)
		}
		for _, b := range []resolver.Backend{primary, replica} {
			be := qorbotel.BackendKey.String(b.Key().String())
			if n, _ := count(t, ms, "db.client.connection.create_time", poolName, be); n != 2 {
				t.Errorf("create_time count for %s = %d, want 2", b.Key(), n)
			}
			role := qorbotel.RoleKey.String(b.Role.String())
			if got := sum(t, ms, "db.client.connection.count", poolName, be, role, idle); got != 2 {
				t.Errorf("count{idle} for %s (%s) = %d, want 2", b.Key(), b.Role, got)
			}
		}
		if got := sum(t, ms, "db.client.connection.max", poolName); got != 4 {
			t.Errorf("max = %d, want 4", got)
		}

		// 10 claims, each held for a second and given back.
		for range 10 {
			cn, err := c.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // virtual time: the use_time of each claim
			cn.Close()
		}
		// Three claims held: one idle connection left.
		var held []driver.Conn
		for range 3 {
			cn, err := c.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, cn)
		}
		// Let background work settle: a stall probe, after the claims
		// held a second with nothing else answering, checks the idle
		// connection and gives it back.
		synctest.Wait()
		ms = collect(t, reader)
		if got := sum(t, ms, "db.client.connection.count", poolName, idle); got != 1 {
			t.Errorf("count{idle} = %d, want 1", got)
		}
		if got := sum(t, ms, "db.client.connection.count", poolName, used); got != 3 {
			t.Errorf("count{used} = %d, want 3", got)
		}
		if n, total := count(t, ms, "db.client.connection.use_time", poolName); n != 10 || total != 10 {
			t.Errorf("use_time count, sum = %d, %gs, want 10, 10s", n, total)
		}
		if n, total := count(t, ms, "db.client.connection.wait_time", poolName); n != 13 || total != 0 {
			t.Errorf("wait_time count, sum = %d, %gs, want 13, 0s (every claim found an idle connection)", n, total)
		}

		// All four held: a claim whose context has ended times out at once.
		cn, err := c.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, cn)
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := c.Connect(done); !errors.Is(err, pool.ErrClaimTimeout) {
			t.Fatalf("Connect with all connections held and an ended context: %v, want pool.ErrClaimTimeout", err)
		}

		// A claim that waits 2 s for a connection to come back.
		got := make(chan driver.Conn)
		go func() {
			cn, err := c.Connect(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- cn
		}()
		synctest.Wait()
		ms = collect(t, reader)
		if got := sum(t, ms, "db.client.connection.pending_requests", poolName); got != 1 {
			t.Errorf("pending_requests = %d, want 1", got)
		}
		if got := sum(t, ms, "db.client.connection.timeouts", poolName); got != 1 {
			t.Errorf("timeouts = %d, want 1", got)
		}
		if got := sum(t, ms, "db.client.connection.count", poolName, used); got != 4 {
			t.Errorf("count{used} = %d, want 4", got)
		}
		time.Sleep(2 * time.Second) // virtual time: the waiter's wait
		held[0].Close()
		held[0] = <-got
		for _, cn := range held {
			cn.Close()
		}

		ms = collect(t, reader)
		if n, total := count(t, ms, "db.client.connection.wait_time", poolName); n != 15 || total != 2 {
			t.Errorf("wait_time count, sum = %d, %gs, want 15, 2s", n, total)
		}
		if n, _ := count(t, ms, "db.client.connection.use_time", poolName); n != 15 {
			t.Errorf("use_time count = %d, want 15", n)
		}
		if got := sum(t, ms, "db.client.connection.pending_requests", poolName); got != 0 {
			t.Errorf("pending_requests = %d, want 0", got)
		}
		if got := sum(t, ms, "db.client.connection.count", poolName, idle); got != 4 {
			t.Errorf("count{idle} = %d, want 4", got)
		}
		if got := sum(t, ms, "db.client.connection.timeouts", poolName); got != 1 {
			t.Errorf("timeouts = %d, want 1", got)
		}

		if err := reg.Unregister(); err != nil {
			t.Fatal(err)
		}
		ms = collect(t, reader)
		if _, ok := ms["db.client.connection.count"]; ok {
			t.Error("db.client.connection.count still reported after Unregister")
		}
	})
}

func TestMetricsFollowConventions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		m, err := qorbotel.NewMetrics(mp, "orders")
		if err != nil {
			t.Fatal(err)
		}
		c := newConnector(t, m)
		if _, err := m.Register(c); err != nil {
			t.Fatal(err)
		}
		done, cancel := context.WithCancel(t.Context())
		cancel()
		var held []driver.Conn
		for range 4 {
			cn, err := c.Connect(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, cn)
		}
		if _, err := c.Connect(done); err == nil {
			t.Fatal("Connect with all connections held and an ended context succeeded")
		}
		for _, cn := range held {
			cn.Close()
		}

		tests := []struct {
			name, unit string
			kind       string // "updown", "counter" or "histogram"
		}{
			{"db.client.connection.count", "{connection}", "updown"},
			{"db.client.connection.max", "{connection}", "updown"},
			{"db.client.connection.pending_requests", "{request}", "updown"},
			{"db.client.connection.timeouts", "{timeout}", "counter"},
			{"db.client.connection.create_time", "s", "histogram"},
			{"db.client.connection.wait_time", "s", "histogram"},
			{"db.client.connection.use_time", "s", "histogram"},
		}
		ms := collect(t, reader)
		if len(ms) != len(tests) {
			t.Errorf("collected %d metrics, want %d", len(ms), len(tests))
		}
		for _, tt := range tests {
			got, ok := ms[tt.name]
			if !ok {
				t.Errorf("%s not collected", tt.name)
				continue
			}
			if got.Unit != tt.unit {
				t.Errorf("%s unit %q, want %q", tt.name, got.Unit, tt.unit)
			}
			var sets []attribute.Set
			switch d := got.Data.(type) {
			case metricdata.Sum[int64]:
				if want := tt.kind == "counter"; d.IsMonotonic != want || tt.kind == "histogram" {
					t.Errorf("%s is a sum, monotonic %v, want a %s", tt.name, d.IsMonotonic, tt.kind)
				}
				for _, p := range d.DataPoints {
					sets = append(sets, p.Attributes)
				}
			case metricdata.Histogram[float64]:
				if tt.kind != "histogram" {
					t.Errorf("%s is a histogram, want a %s", tt.name, tt.kind)
				}
				for _, p := range d.DataPoints {
					sets = append(sets, p.Attributes)
				}
			default:
				t.Errorf("%s data %T", tt.name, got.Data)
			}
			for _, s := range sets {
				if !has(s, poolName) {
					t.Errorf("%s point %v lacks %s", tt.name, s.ToSlice(), poolName.Key)
				}
			}
		}
	})
}

func TestObserveDoesNotAllocate(t *testing.T) {
	m, err := qorbotel.NewMetrics(noop.NewMeterProvider(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	events := []pool.Event{
		{Kind: pool.EventClaim, Backend: primary.Key(), Duration: time.Millisecond},
		{Kind: pool.EventRelease, Backend: primary.Key(), Duration: time.Millisecond},
		{Kind: pool.EventConnect, Backend: replica.Key(), Duration: time.Millisecond},
		{Kind: pool.EventSlotState, Backend: replica.Key(), From: pool.StateIdle, To: pool.StateClaimed},
	}
	for _, e := range events {
		m.Observe(e) // the first event of a backend makes its attributes
	}
	for _, e := range events {
		if n := testing.AllocsPerRun(100, func() { m.Observe(e) }); n != 0 {
			t.Errorf("Observe(%v) allocates %v times, want 0", e, n)
		}
	}
}

func TestNewMetricsNeedsAName(t *testing.T) {
	if _, err := qorbotel.NewMetrics(noop.NewMeterProvider(), ""); err == nil {
		t.Error(`NewMetrics(mp, "") succeeded, want an error`)
	}
}

func TestMetricsCountLeaksAndLookupFailures(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m, err := qorbotel.NewMetrics(mp, "orders")
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(pool.Event{Kind: pool.EventLeak})
	m.Observe(pool.Event{Kind: pool.EventLeak})
	m.Observe(pool.Event{Kind: pool.EventResolverFailed})
	ms := collect(t, reader)
	if got := sum(t, ms, "qorb.client.connection.leaks", poolName); got != 2 {
		t.Errorf("leaks = %d, want 2", got)
	}
	if got := sum(t, ms, "qorb.resolver.failures", poolName); got != 1 {
		t.Errorf("resolver failures = %d, want 1", got)
	}
}
