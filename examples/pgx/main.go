// Command pgx shows qorb's native pgx pool (qorbpgx): pgxpool's API over
// qorb's pool, with writes on the primary, reads on the replicas, a
// transaction, a batch, a copy, an acquired connection, and a read that
// carries a write token and so sees that write even on a replica that
// lags.
//
//	go run ./examples/pgx [DSN]
//
// The DSN lists a PostgreSQL primary and its standbys (in any order: qorb
// asks each server its role), or names them in DNS SRV records
// (postgres+srv://); the default is the local server alone, and then every
// read falls back to it, the only primary. It works in a table of its
// own, qorb_pgx_example_ and a random suffix, and drops it at the end.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/pgdialect/qorbpgx"
)

func main() {
	dsn := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_lag=2s&target_session_attrs=read-write"
	if len(os.Args) > 1 {
		dsn = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := qorbpgx.New(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	b := make([]byte, 4)
	rand.Read(b)
	if err := run(ctx, p, "qorb_pgx_example_"+hex.EncodeToString(b), os.Stdout); err != nil {
		log.Print(err)
		p.Close()
		os.Exit(1)
	}
}

// run creates table, writes to it in the ways pgx offers, reads the rows
// back from a replica, and drops the table, also when something failed.
func run(ctx context.Context, p *qorbpgx.Pool, table string, out io.Writer) (err error) {
	// The DSN's target_session_attrs=read-write sends operations whose
	// context names no role to the primary.
	if _, err := p.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, note text)"); err != nil {
		return err
	}
	defer func() {
		// Not ctx, which may be what ended: the table goes in any case.
		drop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, derr := p.Exec(drop, "DROP TABLE "+table); derr != nil && err == nil {
			err = derr
		}
	}()

	// A copy, a transaction and a batch, each on one connection.
	notes := [][]any{{1, "copied"}, {2, "copied too"}}
	if _, err := p.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "note"}, pgx.CopyFromRows(notes)); err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (3, 'in a transaction')")
		return err
	})
	if err != nil {
		return err
	}
	batch := &pgx.Batch{}
	batch.Queue("INSERT INTO " + table + " VALUES (4, 'batched')")
	batch.Queue("UPDATE " + table + " SET note = note || '!' WHERE id = 4")
	if err := p.SendBatch(ctx, batch).Close(); err != nil {
		return err
	}

	// An acquired connection keeps its server session until released.
	c, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	var pid1, pid2 int
	err = c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1)
	if err == nil {
		err = c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2)
	}
	c.Release()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "an acquired connection stayed on one session: %t\n", pid1 == pid2)

	tok, err := p.WriteToken(ctx)
	if err != nil {
		return err
	}
	// Reads: a replica if one is online and within pool_max_lag, else the
	// primary (RolePreferReplica; RoleReplica would wait for a replica);
	// with the token, only a backend that has replayed the writes.
	read := qorb.WithWriteToken(qorb.WithRole(ctx, qorb.RolePreferReplica), tok)
	rows, err := p.Query(read, "SELECT note, inet_server_port() FROM "+table+" ORDER BY id")
	if err != nil {
		return err
	}
	type note struct {
		Note string
		Port int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[note])
	if err != nil {
		return err
	}
	for _, n := range got {
		fmt.Fprintf(out, "read %q from the server on port %d\n", n.Note, n.Port)
	}
	st := p.Stat()
	fmt.Fprintf(out, "pool: %d connections, %d idle, %d acquires\n", st.TotalConns(), st.IdleConns(), st.AcquireCount())
	return nil
}
