package pgdialect_test

import (
	"database/sql"
	"fmt"
	"log"

	"github.com/qorb-go/qorb/dialects/pgdialect"
)

// An existing pgx connection string in keyword/value form keeps working:
// its hosts become the backends, and the pool parameters added to it never
// reach pgx.
func ExampleNewConnector() {
	c, err := pgdialect.NewConnector("host=10.0.0.1,10.0.0.2 port=5432 user=app dbname=app sslmode=verify-full " +
		"pool_max_conns=20 target_session_attrs=read-write")
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close() // closes the connector too

	var version string
	if err := db.QueryRow("SHOW server_version").Scan(&version); err != nil {
		log.Fatal(err)
	}
	fmt.Println(version)
}

// The URL form, with a host per backend.
func ExampleNewConnector_url() {
	c, err := pgdialect.NewConnector("postgres://app@db1.example:5432,db2.example:5432/app?sslmode=verify-full&pool_max_conns=20")
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()

	if err := db.Ping(); err != nil {
		log.Fatal(err)
	}
}
