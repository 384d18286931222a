package qorb_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/pgdialect" // registers postgres://, postgres+srv:// ...
)

// These examples need a PostgreSQL service to talk to, so they are
// compiled but not run.

// The DSN makes the primary the default for every operation; a report
// that may lag a little reads from a replica instead, or from the primary
// when no replica is online.
func ExampleWithRole() {
	db, err := sql.Open("qorb", "postgres+srv://app@db.service.consul/app?sslmode=verify-full&target_session_attrs=primary")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "INSERT INTO orders (customer, total) VALUES ($1, $2)", 7, 1999); err != nil {
		log.Fatal(err)
	}
	var orders int
	report := qorb.WithRole(ctx, qorb.RolePreferReplica)
	if err := db.QueryRowContext(report, "SELECT count(*) FROM orders").Scan(&orders); err != nil {
		log.Fatal(err)
	}
	fmt.Println(orders, "orders")
}

// A user who has just written must see the write on the next read, even
// when that read goes to a replica that lags: the write token taken after
// the write sends the read only to a backend that has replayed it. The
// token is plain text, so it may also travel to the user's next request,
// in a cookie say.
func ExampleWriteToken() {
	db, err := sql.Open("qorb", "postgres+srv://app@db.service.consul/app?sslmode=verify-full")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	primary := qorb.WithRole(ctx, qorb.RolePrimary)
	if _, err := db.ExecContext(primary, "UPDATE profiles SET name = $1 WHERE id = $2", "Ada", 7); err != nil {
		log.Fatal(err)
	}
	tok, err := qorb.WriteToken(ctx, db)
	if err != nil {
		log.Fatal(err) // qorb.ErrNoReplication: the dialect cannot read positions
	}

	read := qorb.WithWriteToken(qorb.WithRole(ctx, qorb.RoleReplica), tok)
	var name string
	if err := db.QueryRowContext(read, "SELECT name FROM profiles WHERE id = $1", 7).Scan(&name); err != nil {
		log.Fatal(err)
	}
	fmt.Println(name) // Ada, from a replica that has replayed the update, or from the primary
}

// OpenConnector keeps hold of the Connector, for its Stats, where
// sql.Open would hide it. Closing the database closes the connector too.
func ExampleOpenConnector() {
	c, err := qorb.OpenConnector("postgres://app@10.0.0.1:5432,10.0.0.2:5432/app?sslmode=require&pool_max_conns=20")
	if err != nil {
		log.Fatal(err) // wraps qorb.ErrBadDSN, without the password
	}
	db := sql.OpenDB(c)
	defer db.Close()

	if err := db.PingContext(context.Background()); err != nil {
		log.Fatal(err)
	}
	for _, b := range c.Stats().Backends {
		fmt.Printf("%s: %s, %d idle, %d claimed\n", b.Backend.Addr, b.Health, b.Idle, b.Claimed)
	}
}

// A read that is safe to run twice: if its connection dies under it
// before the first row, it runs again on a fresh connection, and so on a
// healthy backend, instead of failing. Reads with a replica role are
// repeatable without it.
func ExampleRepeatable() {
	db, err := sql.Open("qorb", "postgres://app@10.0.0.1:5432,10.0.0.2:5432/app?sslmode=require")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := qorb.Repeatable(context.Background())
	var balance int
	if err := db.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = $1", 7).Scan(&balance); err != nil {
		log.Fatal(err)
	}
	fmt.Println(balance)
}
