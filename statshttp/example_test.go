package statshttp_test

import (
	"database/sql"
	"log"
	"net"
	"net/http"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/pgdialect" // registers postgres:// and postgres+srv://
	"github.com/qorb-go/qorb/statshttp"
)

// After sql.Open, qorb.ConnectorOf finds the pool behind the database;
// the handler serves its stats at /debug/qorb, for a browser or for
// "qorb top http://ADDR/debug/qorb".
func ExampleHandler() {
	db, err := sql.Open("qorb", "postgres+srv://app@db.service.consul/app?sslmode=verify-full")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c, err := qorb.ConnectorOf(db)
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/debug/qorb", statshttp.Handler(c))
	serve(mux)
}

// A program that builds its connector, with qorb.OpenConnector or
// qorb.NewConnector, hands the handler that connector.
func ExampleHandler_connector() {
	c, err := qorb.OpenConnector("postgres://app@10.0.0.1:5432,10.0.0.2:5432/app?sslmode=verify-full")
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close() // closes the connector too

	mux := http.NewServeMux()
	mux.Handle("/debug/qorb", statshttp.Handler(c))
	serve(mux)
}

// serve serves mux on a loopback port of the system's choosing until the
// program ends.
func serve(mux *http.ServeMux) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("stats at http://%s/debug/qorb", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
