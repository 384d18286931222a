package pgdialect_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/pgdialect" // registers postgres://, postgres+srv:// ...
)

// Open a pool over the PostgreSQL backends published as SRV records
// _postgresql._tcp.db.service.consul, verifying each server's certificate
// against its SRV target name. Writes go to the primary by default; a
// read may ask for a replica.
func Example() {
	db, err := sql.Open("qorb", "postgres+srv://app@db.service.consul/app?sslmode=verify-full&target_session_attrs=primary")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close() // stops the resolver and closes every connection

	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "UPDATE jobs SET state = 'done' WHERE id = $1", 42); err != nil {
		log.Fatal(err)
	}
	var pending int
	err = db.QueryRowContext(qorb.WithRole(ctx, qorb.RolePreferReplica),
		"SELECT count(*) FROM jobs WHERE state = 'pending'").Scan(&pending)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pending)
}

// Open a pool over a static list of backends, with pgx parameters
// (sslmode, application_name) and pool parameters side by side.
func Example_staticHosts() {
	db, err := sql.Open("qorb", "postgres://app:secret@10.0.0.1:5432,10.0.0.2:5432/app"+
		"?sslmode=require&application_name=billing&pool_max_conns=20&pool_reset_session=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	var now string
	if err := db.QueryRow("SELECT now()::text").Scan(&now); err != nil {
		log.Fatal(err)
	}
	fmt.Println(now)
}
