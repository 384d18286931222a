package qorbotel_test

import (
	"database/sql"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/pgdialect" // registers postgres+srv://
	qorbotel "github.com/qorb-go/qorb/otel"
)

// A Prometheus user hands the OpenTelemetry Prometheus exporter to the
// meter provider and serves the default registry with promhttp. The
// metrics then appear as db_client_connection_count,
// db_client_connection_wait_time_seconds and so on, with the attributes as
// labels (db_client_connection_pool_name="orders", qorb_backend=...).
func Example_prometheus() {
	exporter, err := otelprom.New() // registers with prometheus.DefaultRegisterer
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	m, err := qorbotel.NewMetrics(mp, "orders")
	if err != nil {
		log.Fatal(err)
	}

	cfg, err := qorb.ParseDSN("postgres+srv://app@db.example/orders")
	if err != nil {
		log.Fatal(err)
	}
	cfg.Policy.Observer = m
	c, err := qorb.NewConnector(cfg)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := m.Register(c)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
	db := sql.OpenDB(c)
	defer db.Close()

	http.Handle("/metrics", promhttp.Handler())
	log.Fatal(http.ListenAndServe("localhost:9464", nil))
}
