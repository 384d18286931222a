// Package fidelity holds the scenarios of plain database/sql code that
// the dialect tests run against their real servers, through qorb and,
// where the scenario compares, through the bare driver: what the program
// sees must be the same, and the server must be left as the bare driver
// leaves it (sessions closed, statements deallocated).
package fidelity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/loopback"
)

// Server is a real database server the scenarios run against.
type Server struct {
	// QorbDSN is a qorb DSN for the server; scenarios add pool
	// parameters.
	QorbDSN string
	// Driver and DSN open the server through the bare driver.
	Driver, DSN string
	// SessionID is a query that returns the id of its session.
	SessionID string
	// Alive is a query, with the id as its one argument, that counts the
	// sessions with that id (0 or 1).
	Alive string
	// OpenStmts counts the statements prepared on c's session, or those
	// whose text holds marker where the server can tell.
	OpenStmts func(ctx context.Context, c *sql.Conn, marker string) (int, error)
	// Prepares counts the statements ever prepared on c's session whose
	// text holds marker, or tells when one was last prepared: a change
	// means a new prepare.
	Prepares func(ctx context.Context, c *sql.Conn, marker string) (int, error)
	// StaleInTx recognizes the error a statement prepared before a
	// schema change gets in a transaction; nil if the server prepares it
	// again itself.
	StaleInTx func(error) bool
	// Addr is the server's address, "host:port".
	Addr string
	// Open starts a connector to the server at addr through the
	// dialect's own DSN, with qorb's parameters params ("k=v&k=v").
	Open func(t testing.TB, addr, params string) *qorb.Connector
}

// Run runs every scenario against s, each as a subtest.
func Run(t *testing.T, s Server) {
	for _, sc := range []struct {
		name string
		run  func(*testing.T, Server)
	}{
		{"CloseWithConnInUse", CloseWithConnInUse},
		{"Shutdown", Shutdown},
		{"SessionKept", SessionKept},
		{"StatementsReleased", StatementsReleased},
		{"StaleStatements", StaleStatements},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, s) })
	}
}

// with returns the qorb DSN with extra parameters.
func (s Server) with(params string) string {
	if strings.Contains(s.QorbDSN, "?") {
		return s.QorbDSN + "&" + params
	}
	return s.QorbDSN + "?" + params
}

// open opens db through qorb with extra DSN parameters, or through the
// bare driver when qorb is false; it is closed when the test ends.
func (s Server) open(t testing.TB, viaQorb bool, params string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if viaQorb {
		db, err = sql.Open("qorb", s.with(params))
	} else {
		db, err = sql.Open(s.Driver, s.DSN)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// watcher opens the bare driver to watch the server's sessions.
func (s Server) watcher(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Querier is what runs a query: a *sql.DB, *sql.Conn or *sql.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sessionID returns the id of the session q runs on.
func (s Server) sessionID(t testing.TB, q Querier) int64 {
	t.Helper()
	var id int64
	if err := q.QueryRowContext(t.Context(), s.SessionID).Scan(&id); err != nil {
		t.Fatalf("%s: %v", s.SessionID, err)
	}
	return id
}

// alive reports whether the session id is open on the server.
func (s Server) alive(t testing.TB, w *sql.DB, id int64) bool {
	t.Helper()
	var n int
	if err := w.QueryRowContext(t.Context(), s.Alive, id).Scan(&n); err != nil {
		t.Fatalf("%s: %v", s.Alive, err)
	}
	return n > 0
}

// waitGone waits until none of the sessions ids is open on the server.
func (s Server) waitGone(t testing.TB, w *sql.DB, what string, ids ...int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for s.alive(t, w, id) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: session %d still open after 10s", what, id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Ways reports the scenario's run through the bare driver and through
// qorb as subtests.
func Ways(t *testing.T, f func(t *testing.T, viaQorb bool)) {
	for _, viaQorb := range []bool{false, true} {
		name := "bare"
		if viaQorb {
			name = "qorb"
		}
		t.Run(name, func(t *testing.T) { f(t, viaQorb) })
	}
}

// CloseWithConnInUse runs db.Close while the program still holds a
// sql.Conn and a sql.Rows it forgot to close: Close returns at once, the
// idle sessions end, and each of the others ends when it is released;
// the forgotten sql.Conn keeps working until then.
func CloseWithConnInUse(t *testing.T, s Server) {
	Ways(t, func(t *testing.T, viaQorb bool) {
		// A long close timeout: waiting for it would show.
		db := s.open(t, viaQorb, "pool_max_conns=3&pool_spares=3&pool_close_timeout=60s")
		w := s.watcher(t)
		ctx := t.Context()
		var conns []*sql.Conn
		var ids []int64
		for range 3 {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			ids = append(ids, s.sessionID(t, c))
		}
		if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
			t.Fatalf("three sql.Conns share sessions: %v", ids)
		}
		forgotten := conns[0]
		conns[1].Close()
		conns[2].Close()
		// The Rows take one of the two idle sessions.
		rows, err := db.QueryContext(ctx, s.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		if !rows.Next() {
			t.Fatalf("no row: %v", rows.Err())
		}
		var rowsID int64
		if err := rows.Scan(&rowsID); err != nil {
			t.Fatal(err)
		}
		idle := ids[1]
		if rowsID == idle {
			idle = ids[2]
		}

		start := time.Now()
		if err := db.Close(); err != nil {
			t.Errorf("db.Close: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("db.Close with a connection in use took %v, want it to return at once", d)
		}
		s.waitGone(t, w, "idle session after db.Close", idle)
		if !s.alive(t, w, ids[0]) || !s.alive(t, w, rowsID) {
			t.Fatal("a session in use was closed by db.Close")
		}
		if got := s.sessionID(t, forgotten); got != ids[0] {
			t.Errorf("the forgotten sql.Conn runs on session %d after db.Close, want its own %d", got, ids[0])
		}
		if err := forgotten.Close(); err != nil {
			t.Errorf("closing the sql.Conn after db.Close: %v", err)
		}
		s.waitGone(t, w, "sql.Conn released after db.Close", ids[0])
		if !s.alive(t, w, rowsID) {
			t.Fatal("the session of the open Rows ended before they were closed")
		}
		if err := rows.Close(); err != nil {
			t.Errorf("closing the Rows after db.Close: %v", err)
		}
		s.waitGone(t, w, "Rows closed after db.Close", rowsID)
	})
}

// Shutdown runs Connector.Shutdown while a sql.Conn is in use: it waits
// for it, and closes its session when it is released; with a deadline,
// it closes the session when the deadline passes.
func Shutdown(t *testing.T, s Server) {
	for _, deadline := range []bool{false, true} {
		t.Run(fmt.Sprintf("deadline=%v", deadline), func(t *testing.T) {
			c, err := qorb.OpenConnector(s.with("pool_max_conns=2&pool_spares=2&pool_close_timeout=60s"))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			t.Cleanup(func() { db.Close() })
			w := s.watcher(t)
			ctx := t.Context()
			held, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			heldID := s.sessionID(t, held)
			other, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			otherID := s.sessionID(t, other)
			other.Close()

			sctx := context.Background()
			if deadline {
				var cancel context.CancelFunc
				sctx, cancel = context.WithTimeout(sctx, 300*time.Millisecond)
				defer cancel()
			}
			done := make(chan error, 1)
			go func() { done <- c.Shutdown(sctx) }()
			s.waitGone(t, w, "idle session during Shutdown", otherID)
			if _, err := db.ExecContext(ctx, s.SessionID); err == nil {
				t.Error("a new operation during Shutdown succeeded")
			}
			if deadline {
				err := <-done
				if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "closed 1 connections still claimed") {
					t.Errorf("Shutdown past its deadline = %v, want DeadlineExceeded saying it closed 1 connection", err)
				}
				s.waitGone(t, w, "session in use after Shutdown's deadline", heldID)
				return
			}
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned %v with a connection in use", err)
			default:
			}
			if got := s.sessionID(t, held); got != heldID {
				t.Errorf("the sql.Conn runs on session %d during Shutdown, want %d", got, heldID)
			}
			if !s.alive(t, w, heldID) {
				t.Fatal("Shutdown closed a session in use")
			}
			held.Close()
			if err := <-done; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			s.waitGone(t, w, "session released during Shutdown", heldID)
		})
	}
}

// SessionKept runs, on fresh pools started by s.Open, what sequential
// code does on one backend:
// a temporary table created by one db.Exec is used by the next ones, from
// the same goroutine. database/sql reuses the connection it was given
// back last, and so must qorb with one backend, also while its spare
// connections finish connecting: the address is a proxy that forwards
// every connection but the first only after a while, so they finish after
// the first statement, as they do over TLS to a busy server.
func SessionKept(t *testing.T, s Server) {
	const pools, parallel = 8, 4
	sem := make(chan struct{}, parallel)
	errs := make(chan error, pools)
	for i := range pools {
		addr := loopback.SlowProxy(t, "127.0.0.1", s.Addr, 200*time.Millisecond)
		c := s.Open(t, addr, "pool_spares=2")
		db := sql.OpenDB(c)
		t.Cleanup(func() { db.Close() })
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- tempTableKept(t.Context(), c, db, fmt.Sprintf("qorb_session_%d", i))
		}()
	}
	for range pools {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// tempTableKept creates a temporary table, waits until c's spare
// connections have opened, inserts into the table and counts its rows,
// each statement in a db.Exec or db.QueryRow of its own.
func tempTableKept(ctx context.Context, c *qorb.Connector, db *sql.DB, table string) error {
	q := "CREATE TEMPORARY TABLE " + table + " (a int)"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for idle, opening := 0, 1; idle < 2 || opening > 0; {
		if time.Now().After(deadline) {
			return fmt.Errorf("after 10s, %d connections idle and %d opening, want at least 2 and none", idle, opening)
		}
		time.Sleep(10 * time.Millisecond)
		idle, opening = 0, 0
		for _, b := range c.Stats().Backends {
			idle += b.Idle
			opening += b.Connecting + b.BackingOff
		}
	}
	q = "INSERT INTO " + table + " VALUES (1)"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("once the spare connections had opened: %s: %w", q, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return fmt.Errorf("counting rows: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("%s has %d rows, want 1", table, n)
	}
	return nil
}

// unique returns a name no concurrent test uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e9, rand.IntN(1e6))
}

// StatementsReleased prepares and closes statements on one connection:
// the server keeps at most the cache's size of those no open sql.Stmt
// uses (pool_stmt_cache=4), keeps every one an open sql.Stmt uses, and
// preparing a text again soon after its close prepares nothing new.
func StatementsReleased(t *testing.T, s Server) {
	const keep = 4
	db := s.open(t, true, fmt.Sprintf("pool_max_conns=1&pool_stmt_cache=%d", keep))
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	marker := unique("qorb_mark")
	text := func(i int) string { return fmt.Sprintf("SELECT %d AS %s", i, marker) }
	count := func(what string) int {
		t.Helper()
		n, err := s.OpenStmts(ctx, conn, marker)
		if err != nil {
			t.Fatalf("counting statements %s: %v", what, err)
		}
		return n
	}
	base := count("before")
	run := func(st *sql.Stmt, i int) {
		t.Helper()
		var got int
		if err := st.QueryRowContext(ctx).Scan(&got); err != nil || got != i {
			t.Fatalf("%s = %d, %v", text(i), got, err)
		}
	}

	// Closed statements beyond the cache are deallocated.
	for i := range 20 {
		st, err := conn.PrepareContext(ctx, text(i))
		if err != nil {
			t.Fatal(err)
		}
		run(st, i)
		st.Close()
	}
	if n := count("after 20 closed") - base; n > keep {
		t.Errorf("%d statements prepared on the server after 20 were prepared and closed, want at most %d (pool_stmt_cache)", n, keep)
	}

	// Open statements are kept, whatever their number.
	var open []*sql.Stmt
	for i := range 3 * keep {
		st, err := conn.PrepareContext(ctx, text(100+i))
		if err != nil {
			t.Fatal(err)
		}
		run(st, 100+i)
		open = append(open, st)
	}
	for i, st := range open {
		run(st, 100+i) // still prepared
	}
	if n := count("with 12 open") - base; n < 3*keep || n > 4*keep {
		t.Errorf("%d statements prepared with %d open, want at least those and at most %d cached besides", n, 3*keep, keep)
	}
	for _, st := range open {
		st.Close()
	}
	if n := count("after closing them") - base; n > keep {
		t.Errorf("%d statements prepared after the open ones closed, want at most %d", n, keep)
	}

	// The last ones closed are still prepared: preparing one again
	// prepares nothing on the server.
	prepares := func() int {
		t.Helper()
		n, err := s.Prepares(ctx, conn, marker)
		if err != nil {
			t.Fatalf("counting prepares: %v", err)
		}
		return n
	}
	before := prepares()
	st, err := conn.PrepareContext(ctx, text(100+3*keep-1))
	if err != nil {
		t.Fatal(err)
	}
	run(st, 100+3*keep-1)
	st.Close()
	if after := prepares(); after != before {
		t.Errorf("preparing a statement closed just before prepared it again on the server (%d prepares, then %d)", before, after)
	}
}

// StaleStatements changes a table's schema under statements prepared on
// a connection: they run again, prepared afresh, outside a transaction,
// and so does the same text run without preparing it; inside a
// transaction the error reaches the program (the server has aborted the
// transaction, or the program must decide), and the statement works
// again after it.
func StaleStatements(t *testing.T, s Server) {
	db := s.open(t, true, "pool_max_conns=1")
	ctx := t.Context()
	table := unique("qorb_stale")
	mustExec(t, db, "CREATE TABLE "+table+" (a int)")
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, db, "INSERT INTO "+table+" (a) VALUES (1)")
	q := "SELECT * FROM " + table
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	columns := func(what string) func(*sql.Rows, error) int {
		return func(rows *sql.Rows, err error) int {
			t.Helper()
			return countColumns(t, what, rows, err)
		}
	}
	if n := columns("before the change")(st.QueryContext(ctx)); n != 1 {
		t.Fatalf("%d columns, want 1", n)
	}
	mustExec(t, db, "ALTER TABLE "+table+" ADD COLUMN b int")
	if n := columns("prepared statement after ALTER TABLE")(st.QueryContext(ctx)); n != 2 {
		t.Errorf("%d columns after ALTER TABLE ADD COLUMN, want 2", n)
	}
	mustExec(t, db, "ALTER TABLE "+table+" ADD COLUMN c int")
	if n := columns("the same text unprepared after ALTER TABLE")(db.QueryContext(ctx, q)); n != 3 {
		t.Errorf("%d columns after a second ALTER TABLE, want 3", n)
	}
	if _, err := st.ExecContext(ctx); err != nil {
		t.Errorf("Exec of the prepared statement: %v", err)
	}

	// Inside a transaction.
	mustExec(t, db, "ALTER TABLE "+table+" DROP COLUMN c")
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.StmtContext(ctx, st).QueryContext(ctx)
	if err == nil {
		countColumns(t, "in a transaction", rows, nil)
	}
	switch {
	case s.StaleInTx != nil && !s.StaleInTx(err):
		t.Errorf("stale statement in a transaction: %v, want the server's error", err)
	case s.StaleInTx == nil && err != nil:
		t.Errorf("stale statement in a transaction: %v, want the server to prepare it again itself", err)
	}
	tx.Rollback()
	if n := columns("after the transaction")(st.QueryContext(ctx)); n != 2 {
		t.Errorf("%d columns after the transaction, want 2", n)
	}
}

func mustExec(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// countColumns reads rows to the end and returns how many columns they
// have, failing the test for err or an error while reading.
func countColumns(t testing.TB, what string, rows *sql.Rows, err error) int {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return len(cols)
}
