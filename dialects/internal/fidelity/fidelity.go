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

// SessionKept runs, on fresh pools that open runs with DSN parameters
// params and a server address, what sequential code does on one backend:
// a temporary table created by one db.Exec is used by the next ones, from
// the same goroutine. database/sql reuses the connection it was given
// back last, and so must qorb with one backend, also while its spare
// connections finish connecting: the address is a proxy that forwards
// every connection but the first only after a while, so they finish after
// the first statement, as they do over TLS to a busy server.
func SessionKept(t *testing.T, target string, open func(t testing.TB, addr, params string) *qorb.Connector) {
	const pools, parallel = 8, 4
	sem := make(chan struct{}, parallel)
	errs := make(chan error, pools)
	for i := range pools {
		addr := loopback.SlowProxy(t, "127.0.0.1", target, 200*time.Millisecond)
		c := open(t, addr, "pool_spares=2")
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
