package qorbotel_test

import (
	"slices"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	qorbotel "github.com/qorb-go/qorb/otel"
)

// TestPrometheusNames checks the names and labels a Prometheus user sees,
// as the example and the README give them.
func TestPrometheusNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		registry := prometheus.NewRegistry()
		exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
		if err != nil {
			t.Fatal(err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
		m, err := qorbotel.NewMetrics(mp, "orders")
		if err != nil {
			t.Fatal(err)
		}
		c := newConnector(t, m)
		if _, err := m.Register(c); err != nil {
			t.Fatal(err)
		}
		cn, err := c.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cn.Close()

		families, err := registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		labels := map[string][]string{}
		for _, f := range families {
			var names []string
			for _, l := range f.GetMetric()[0].GetLabel() {
				names = append(names, l.GetName())
			}
			labels[f.GetName()] = names
		}
		want := map[string][]string{
			"db_client_connection_count":               {"db_client_connection_pool_name", "db_client_connection_state", "qorb_backend", "qorb_backend_role"},
			"db_client_connection_max":                 {"db_client_connection_pool_name"},
			"db_client_connection_pending_requests":    {"db_client_connection_pool_name"},
			"db_client_connection_create_time_seconds": {"db_client_connection_pool_name", "qorb_backend"},
			"db_client_connection_wait_time_seconds":   {"db_client_connection_pool_name", "qorb_backend"},
			"db_client_connection_use_time_seconds":    {"db_client_connection_pool_name", "qorb_backend"},
		}
		for name, w := range want {
			got, ok := labels[name]
			if !ok {
				t.Errorf("no metric %s; got %v", name, labels)
				continue
			}
			slices.Sort(got)
			if !slices.Equal(got, w) {
				t.Errorf("%s labels %v, want %v", name, got, w)
			}
		}
	})
}
