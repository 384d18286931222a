// Command readwrite shows qorb's read/write routing: writes go to the
// primary, reads to the replicas, and a read that carries a write token
// sees that write even on a replica that lags.
//
//	go run ./examples/readwrite [DSN]
//
// The DSN lists a PostgreSQL primary and its standbys (in any order: qorb
// asks each server its role); the default is the local server alone, and
// then every read falls back to it, the only primary. It works in a table
// of its own, qorb_example_ and a random suffix, and drops it at the end.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
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
	b := make([]byte, 4)
	rand.Read(b)
	if err := run(ctx, db, "qorb_example_"+hex.EncodeToString(b), os.Stdout); err != nil {
		log.Print(err)
		db.Close()
		os.Exit(1)
	}
}

// run writes a row to table, which it creates, reads it back, and drops
// the table, also when something failed.
func run(ctx context.Context, db *sql.DB, table string, out io.Writer) (err error) {
	// Writes: the primary.
	write := qorb.WithRole(ctx, qorb.RolePrimary)
	if _, err := db.ExecContext(write, "CREATE TABLE "+table+" (id serial PRIMARY KEY, note text)"); err != nil {
		return err
	}
	defer func() {
		// Not ctx, which may be what ended: the table goes in any case.
		drop, cancel := context.WithTimeout(qorb.WithRole(context.Background(), qorb.RolePrimary), 10*time.Second)
		defer cancel()
		if _, derr := db.ExecContext(drop, "DROP TABLE "+table); derr != nil && err == nil {
			err = derr
		}
	}()
	var id int
	if err := db.QueryRowContext(write, "INSERT INTO "+table+" (note) VALUES ($1) RETURNING id", "hello").Scan(&id); err != nil {
		return err
	}
	tok, err := qorb.WriteToken(ctx, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote row %d; write token %s\n", id, tok)

	// Reads: a replica if one is online and within pool_max_lag, else the
	// primary (RolePreferReplica; RoleReplica would wait for a replica);
	// with the token, only a backend that has replayed the write.
	read := qorb.WithWriteToken(qorb.WithRole(ctx, qorb.RolePreferReplica), tok)
	var note string
	var port int
	if err := db.QueryRowContext(read, "SELECT note, inet_server_port() FROM "+table+" WHERE id = $1", id).Scan(&note, &port); err != nil {
		return err
	}
	fmt.Fprintf(out, "read row %d back (%q) from the server on port %d\n", id, note, port)
	return nil
}
