// Command readwrite shows qorb's read/write routing: writes go to the
// primary, reads to the replicas, and a read that carries a write token
// sees that write even on a replica that lags.
//
//	go run ./examples/readwrite [DSN]
//
// The DSN lists a PostgreSQL primary and its standbys (in any order: qorb
// asks each server its role); the default is the local server alone, and
// then every read falls back to it, the only primary.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/pgdialect"
)

func main() {
	dsn := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_lag=2s"
	if len(os.Args) > 1 {
		dsn = os.Args[1]
	}
	db, err := sql.Open("qorb", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Writes: the primary.
	write := qorb.WithRole(ctx, qorb.RolePrimary)
	if _, err := db.ExecContext(write, "CREATE TABLE IF NOT EXISTS qorb_example (id serial PRIMARY KEY, note text)"); err != nil {
		log.Fatal(err)
	}
	var id int
	if err := db.QueryRowContext(write, "INSERT INTO qorb_example (note) VALUES ($1) RETURNING id", "hello").Scan(&id); err != nil {
		log.Fatal(err)
	}
	tok, err := qorb.WriteToken(ctx, db)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote row %d; write token %s\n", id, tok)

	// Reads: a replica if one is online and within pool_max_lag, else the
	// primary; with the token, only a backend that has replayed the write.
	read := qorb.WithWriteToken(qorb.WithRole(ctx, qorb.RolePreferReplica), tok)
	var note string
	var port int
	if err := db.QueryRowContext(read, "SELECT note, inet_server_port() FROM qorb_example WHERE id = $1", id).Scan(&note, &port); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("read row %d back (%q) from the server on port %d\n", id, note, port)
}
