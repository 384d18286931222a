package qorbotel

import (
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// stats is a Pool with fixed stats.
type stats pool.Stats

func (s *stats) Stats() pool.Stats { return pool.Stats(*s) }

// TestBackendAttributesForgotten checks that the attributes kept for each
// backend go when the backend goes: at its removal, and at the next
// collection for one whose held connection came back after it.
func TestBackendAttributesForgotten(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), "orders")
	if err != nil {
		t.Fatal(err)
	}
	a := resolver.Backend{Host: "a", Addr: "10.0.0.1:5432"}
	b := resolver.Backend{Host: "b", Addr: "10.0.0.2:5432"}
	st := &stats{Backends: []pool.BackendStats{{Backend: a}, {Backend: b}}}
	if _, err := m.Register(st); err != nil {
		t.Fatal(err)
	}
	cached := func() int { return len(*m.backends.Load()) }

	m.Observe(pool.Event{Kind: pool.EventConnect, Backend: a.Key(), Duration: time.Millisecond})
	m.Observe(pool.Event{Kind: pool.EventConnect, Backend: b.Key(), Duration: time.Millisecond})
	if n := cached(); n != 2 {
		t.Fatalf("%d backends cached after connects to 2, want 2", n)
	}
	m.Observe(pool.Event{Kind: pool.EventBackendRemoved, Backend: b.Key()})
	if n := cached(); n != 1 {
		t.Errorf("%d backends cached after one of 2 was removed, want 1", n)
	}
	// A connection to b held across its removal comes back.
	m.Observe(pool.Event{Kind: pool.EventRelease, Backend: b.Key(), Duration: time.Second})
	if n := cached(); n != 2 {
		t.Errorf("%d backends cached after a release, want 2", n)
	}
	st.Backends = st.Backends[:1]
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := cached(); n != 1 {
		t.Errorf("%d backends cached after a collection that saw 1, want 1", n)
	}
}
