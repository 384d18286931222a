package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

const update = "UPDATE t SET x = 1"

// TestFailedStatement shows DESIGN decision 3. An error that says the
// connection is dead discards it: the pool closes it, opens another and
// counts a failure against its backend. When nothing reached the server
// (driver.ErrBadConn) database/sql retries, and the operation succeeds on
// another backend; otherwise the caller sees the error. An error of the
// statement alone keeps the connection.
func TestFailedStatement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		retried   bool // the operation succeeds on another backend
		discarded bool
	}{
		{"ErrBadConn", driver.ErrBadConn, true, true},
		{"wrapped ErrBadConn", &net.OpError{Op: "write", Net: "tcp", Err: driver.ErrBadConn}, true, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, false, true},
		{"network error", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false, true},
		{"statement error", errors.New(`ERROR: relation "t" does not exist`), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				bs := backends(3)
				c := newConnector(t, o, onePerBackend(len(bs)), bs...)
				db := openDB(t, c)
				synctest.Wait()
				ctx := t.Context()

				o.failNext(tt.err)
				_, err := db.ExecContext(ctx, update)
				synctest.Wait() // let the pool replace what it discarded

				var failed *fakeConn
				ran := 0
				for _, fc := range o.opened() {
					ran += fc.ran("Exec " + update)
					if fc.faults.Load() > 0 {
						failed = fc
					}
				}
				if failed == nil {
					t.Fatal("the fault hit no connection")
				}
				if tt.retried {
					if err != nil {
						t.Fatalf("ExecContext = %v, want database/sql to retry it on another connection", err)
					}
					if ran != 2 {
						t.Errorf("the statement ran %d times, want 2 (the failure and the retry)", ran)
					}
					for _, fc := range o.opened() {
						if fc.backend == failed.backend && fc.ran("Exec "+update) > 0 && fc != failed {
							t.Errorf("the retry ran on backend %s, the one that failed", fc.backend)
						}
					}
				} else {
					if !errors.Is(err, tt.err) {
						t.Fatalf("ExecContext = %v, want %v", err, tt.err)
					}
					if ran != 1 {
						t.Errorf("the statement ran %d times, want once", ran)
					}
				}

				st := backendStats(t, c, failed.backend)
				if got := failed.closed.Load(); got != tt.discarded {
					t.Errorf("failed connection closed = %v, want %v", got, tt.discarded)
				}
				wantConnects := 1
				if tt.discarded {
					wantConnects = 2
					if st.Failures == 0 {
						t.Errorf("backend %s: Failures = 0, want the discarded connection counted", failed.backend)
					}
					if !strings.Contains(st.LastError, tt.err.Error()) {
						t.Errorf("backend %s: LastError = %q, want it to contain %q", failed.backend, st.LastError, tt.err)
					}
				} else if st.Failures != 0 {
					t.Errorf("backend %s: Failures = %d (%s), want 0", failed.backend, st.Failures, st.LastError)
				}
				if got := o.connects(failed.backend); got != wantConnects {
					t.Errorf("backend %s: %d connections opened, want %d", failed.backend, got, wantConnects)
				}
				if got := claimed(c); got != 0 {
					t.Errorf("%d connections claimed after the operation, want 0", got)
				}
				// Every backend serves again.
				before := o.calls()
				for range 2 * len(bs) {
					if _, err := db.ExecContext(ctx, update); err != nil {
						t.Fatalf("ExecContext after the failure: %v", err)
					}
				}
				after := o.calls()
				for _, b := range bs {
					if after[b.Addr]["Exec "+update] == before[b.Addr]["Exec "+update] {
						t.Errorf("backend %s ran no statement after the failure", b.Addr)
					}
				}
			})
		})
	}
}

// single is a connector over one backend and one connection, and a DB
// over it.
type single struct {
	o  *fakeOpener
	c  *Connector
	db *sql.DB
	fc *fakeConn // the connection
}

// newSingle starts a single over o, and waits for its connection. It must
// run in a synctest bubble.
func newSingle(t *testing.T, o *fakeOpener) single {
	t.Helper()
	c := newConnector(t, o, onePerBackend(1), backends(1)...)
	db := openDB(t, c)
	synctest.Wait()
	return single{o: o, c: c, db: db, fc: o.opened()[0]}
}

// TestResetSessionForwarded shows that the handle database/sql keeps idle
// claims a connection in ResetSession, with the operation's context, and
// forwards the call to the driver's conn when it has one.
func TestResetSessionForwarded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSingle(t, &fakeOpener{})
		for range 4 {
			queryBackend(t, t.Context(), s.db)
		}
		// The first operation used the handle Connect returned,
		// which checked its connection; the other three reused it.
		if got := s.fc.resets.Load(); got != 4 {
			t.Errorf("driver ResetSession called %d times, want 4", got)
		}
		if got := s.db.Stats().OpenConnections; got != 1 {
			t.Errorf("database/sql has %d handles open, want the 1 it reused", got)
		}
	})
}

// TestResetSessionBadConn shows that when the driver's ResetSession says
// ErrBadConn as database/sql reuses an idle handle, the connection is
// dropped and counted against its backend, and the operation runs on the
// connection the pool opens in its place.
func TestResetSessionBadConn(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// Connection 1 passes Connect's check, then refuses the
		// reset when the idle handle reuses it.
		s := newSingle(t, &fakeOpener{resetErr: firstConnResetFails, resetOK: 1})
		addr := s.fc.backend
		ctx := t.Context()
		if got, want := queryBackend(t, ctx, s.db), addr+"/1"; got != want {
			t.Fatalf("first query ran on %s, want %s", got, want)
		}
		// The idle handle claims connection 1 again, whose driver
		// refuses the reset: database/sql retries, and Connect waits
		// for the connection the pool opens in its place.
		if got, want := queryBackend(t, ctx, s.db), addr+"/2"; got != want {
			t.Errorf("second query ran on %s, want %s", got, want)
		}
		if !s.fc.closed.Load() {
			t.Error("the connection whose reset failed is still open")
		}
		if st := backendStats(t, s.c, addr); st.Failures == 0 {
			t.Error("backend Failures = 0, want the connection whose reset failed counted")
		}
	})
}

// firstConnResetFails is a fakeOpener.resetErr: the driver's ResetSession
// says ErrBadConn on the first connection to each backend.
func firstConnResetFails(_ resolver.Backend, n int) error {
	if n == 1 {
		return driver.ErrBadConn
	}
	return nil
}

// TestConnectChecksItsConnection shows that a new handle, which gets no
// ResetSession from database/sql, has its connection checked with the
// driver's ResetSession all the same, and that another is claimed in
// place of one the driver finds dead.
func TestConnectChecksItsConnection(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSingle(t, &fakeOpener{resetErr: firstConnResetFails})
		if got, want := queryBackend(t, t.Context(), s.db), s.fc.backend+"/2"; got != want {
			t.Errorf("first query ran on %s, want %s", got, want)
		}
		if !s.fc.closed.Load() {
			t.Error("the connection Connect found dead is still open")
		}
	})
}

// TestResetSessionNoConnectionToClaim shows that when database/sql reuses
// an idle handle and no connection comes free, the operation fails with
// the pool's typed error once the claim timeout or the caller's deadline
// passes, whichever is first, and does not wait again for each retry
// database/sql would make.
func TestResetSessionNoConnectionToClaim(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		claimFor time.Duration // the pool's claim timeout
		deadline time.Duration // the caller's; 0: none
		want     []error
	}{
		{"claim timeout", time.Second, 0, []error{pool.ErrClaimTimeout}},
		{"caller's deadline", time.Minute, 100 * time.Millisecond, []error{pool.ErrClaimTimeout, context.DeadlineExceeded}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := backends(1)[0]
				o := &fakeOpener{}
				c := newConnector(t, o, pool.Policy{MaxSlots: 2, MaxPerBackend: 2, Spares: 2, ClaimTimeout: tt.claimFor}, b)
				db := openDB(t, c)
				synctest.Wait()
				// Leave two handles idle in database/sql, the most it keeps.
				sc, err := db.Conn(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				queryBackend(t, t.Context(), db)
				sc.Close()
				if got := db.Stats().Idle; got != 2 {
					t.Fatalf("database/sql keeps %d handles idle, want 2", got)
				}
				// Claim every connection past database/sql.
				var held []driver.Conn
				for range 2 {
					dc, err := c.Connect(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					held = append(held, dc)
				}
				ctx, limit := t.Context(), tt.claimFor
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
					limit = tt.deadline
				}
				start := time.Now()
				err = db.QueryRowContext(ctx, "SELECT backend").Scan(new(string))
				waited := time.Since(start)
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("query with every connection claimed = %v, want it to wrap %v", err, w)
					}
				}
				if errors.Is(err, driver.ErrBadConn) {
					t.Errorf("query with every connection claimed = %v, which wraps driver.ErrBadConn", err)
				}
				if err != nil && !strings.Contains(err.Error(), b.Addr) {
					t.Errorf("query with every connection claimed = %q, want it to name backend %s", err, b.Addr)
				}
				if waited < limit || waited > limit+limit/2 {
					t.Errorf("query failed after %v, want %v", waited, limit)
				}
				for _, dc := range held {
					dc.Close()
				}
				queryBackend(t, t.Context(), db)
			})
		})
	}
}

// TestDriverConnInvalid shows that a connection whose driver conn reports
// itself invalid (driver.Validator) when an operation ends is not reused.
func TestDriverConnInvalid(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSingle(t, &fakeOpener{})
		ctx := t.Context()
		first := queryBackend(t, ctx, s.db)
		s.fc.invalid.Store(true)
		second := queryBackend(t, ctx, s.db)
		// The second query still ran on connection 1: IsValid is asked
		// when an operation ends.
		if first != second {
			t.Fatalf("queries ran on %s and %s, want one connection", first, second)
		}
		synctest.Wait()
		if got, want := queryBackend(t, ctx, s.db), s.fc.backend+"/2"; got != want {
			t.Errorf("after connection 1 said it was invalid, a query ran on %s, want %s", got, want)
		}
		if s.fc.valids.Load() == 0 {
			t.Error("the driver conn's IsValid was never called")
		}
		if !s.fc.closed.Load() {
			t.Error("the invalid connection is still open")
		}
	})
}

// The TestForwarding tests show that the wrapped conn hands every call to
// a driver conn that implements it, and that database/sql works unchanged
// through the fallbacks for a driver conn that implements only
// driver.Conn.

// TestForwardingExecQuery: Exec and Query go straight through to a driver
// conn with ExecerContext and QueryerContext. Without them database/sql
// prepares every statement, and the connection's cache prepares each
// query once.
func TestForwardingExecQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		kind  connKind
		calls map[string]int // exactly what reaches the driver conn
	}{
		{"full", fullKind, map[string]int{"Exec " + update: 2, "Query SELECT backend": 1}},
		{"base only", baseKind, map[string]int{
			"Prepare " + update: 1, "Stmt.Exec " + update: 2,
			"Prepare SELECT backend": 1, "Stmt.Query SELECT backend": 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSingle(t, &fakeOpener{kind: tt.kind})
				ctx := t.Context()
				for range 2 {
					if _, err := s.db.ExecContext(ctx, update); err != nil {
						t.Fatalf("ExecContext: %v", err)
					}
				}
				if got, want := queryBackend(t, ctx, s.db), s.fc.name(); got != want {
					t.Errorf("QueryRowContext = %q, want %q", got, want)
				}
				checkCalls(t, s.fc, tt.calls)
				if tt.kind == fullKind && (s.fc.resets.Load() == 0 || s.fc.valids.Load() == 0) {
					t.Errorf("driver ResetSession called %d times, IsValid %d times; want both called", s.fc.resets.Load(), s.fc.valids.Load())
				}
			})
		})
	}
}

// TestForwardingArguments: the driver's NamedValueChecker sees the
// arguments; without one database/sql's default conversion applies, and
// the driver's statements take no named parameters.
func TestForwardingArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		kind    connKind
		arg     any
		wantErr string // in ExecContext's error; "": none
		calls   map[string]int
	}{
		{"full/a type only the driver accepts", fullKind, point{1, 2}, "", map[string]int{"Exec " + update: 1}},
		{"base only/a type the default converter rejects", baseKind, point{1, 2}, "unsupported type", map[string]int{}},
		{"base only/int64", baseKind, int64(7), "", map[string]int{"Prepare " + update: 1, "Stmt.Exec " + update: 1}},
		{"base only/named parameter", baseKind, sql.Named("x", 1), "named parameters", map[string]int{"Prepare " + update: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSingle(t, &fakeOpener{kind: tt.kind})
				_, err := s.db.ExecContext(t.Context(), update, tt.arg)
				switch {
				case tt.wantErr == "" && err != nil:
					t.Errorf("ExecContext with %T: %v", tt.arg, err)
				case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
					t.Errorf("ExecContext with %T = %v, want an error saying %q", tt.arg, err, tt.wantErr)
				}
				checkCalls(t, s.fc, tt.calls)
			})
		})
	}
}

// TestForwardingPing: db.PingContext reaches the driver's Ping, or falls
// back to the Opener's health check for a driver conn without one.
func TestForwardingPing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		kind        connKind
		driverPings int
		openerPings int64
	}{
		{"full", fullKind, 1, 0},
		{"base only", baseKind, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSingle(t, &fakeOpener{kind: tt.kind})
				pings := s.o.pings.Load()
				if err := s.db.PingContext(t.Context()); err != nil {
					t.Errorf("PingContext: %v", err)
				}
				if got := s.fc.ran("Ping"); got != tt.driverPings {
					t.Errorf("driver Ping called %d times, want %d", got, tt.driverPings)
				}
				if got := s.o.pings.Load() - pings; got != tt.openerPings {
					t.Errorf("Opener.Ping called %d times for db.PingContext, want %d", got, tt.openerPings)
				}
			})
		})
	}
}

// TestForwardingBeginTx: BeginTx hands its options to the driver's
// BeginTx. A driver conn without one serves a default transaction through
// Begin; any other is an error, as database/sql itself would give.
func TestForwardingBeginTx(t *testing.T) {
	t.Parallel()
	serializable := &sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true}
	t.Run("full", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := newSingle(t, &fakeOpener{kind: fullKind})
			tx, err := s.db.BeginTx(t.Context(), serializable)
			if err != nil {
				t.Fatalf("BeginTx: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			want := driver.TxOptions{Isolation: driver.IsolationLevel(sql.LevelSerializable), ReadOnly: true}
			if got := s.fc.beginOpts(); len(got) != 1 || got[0] != want {
				t.Errorf("driver BeginTx got %+v, want one call with %+v", got, want)
			}
			checkCalls(t, s.fc, map[string]int{"Begin": 1, "Commit": 1})
		})
	})
	t.Run("base only", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := newSingle(t, &fakeOpener{kind: baseKind})
			ctx := t.Context()
			tx, err := s.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatalf("BeginTx(nil): %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			for _, opts := range []*sql.TxOptions{serializable, {ReadOnly: true}, {Isolation: sql.LevelRepeatableRead}} {
				if tx, err := s.db.BeginTx(ctx, opts); err == nil {
					tx.Rollback()
					t.Errorf("BeginTx(%+v) succeeded, want an error: the driver has no BeginTx", *opts)
				}
			}
			if got := claimed(s.c); got != 0 {
				t.Errorf("%d connections claimed after the failed BeginTx, want 0", got)
			}
			checkCalls(t, s.fc, map[string]int{"Begin": 1, "Commit": 1})
		})
	})
}

// TestForwardingPrepare: a statement prepared through database/sql is
// prepared with the driver's PrepareContext and runs there.
func TestForwardingPrepare(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSingle(t, &fakeOpener{kind: fullKind})
		ctx := t.Context()
		st, err := s.db.PrepareContext(ctx, update)
		if err != nil {
			t.Fatalf("PrepareContext: %v", err)
		}
		defer st.Close()
		if _, err := st.ExecContext(ctx); err != nil {
			t.Errorf("prepared ExecContext: %v", err)
		}
		checkCalls(t, s.fc, map[string]int{"Prepare " + update: 1, "Stmt.Exec " + update: 1})
	})
}

// TestForwardingFallbacks calls the wrapped conn of a base-only driver
// conn directly, as database/sql would: each optional method says
// driver.ErrSkip or does what database/sql would do without it, and the
// methods of driver.Conn itself reach the driver, Prepare through the
// connection's statement cache.
func TestForwardingFallbacks(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSingle(t, &fakeOpener{kind: baseKind})
		ctx := t.Context()
		dc, err := s.c.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer dc.Close()
		if _, err := dc.(driver.ExecerContext).ExecContext(ctx, update, nil); !errors.Is(err, driver.ErrSkip) {
			t.Errorf("ExecContext = %v, want driver.ErrSkip", err)
		}
		if _, err := dc.(driver.QueryerContext).QueryContext(ctx, "SELECT 1", nil); !errors.Is(err, driver.ErrSkip) {
			t.Errorf("QueryContext = %v, want driver.ErrSkip", err)
		}
		nv := &driver.NamedValue{Ordinal: 1, Value: point{}}
		if err := dc.(driver.NamedValueChecker).CheckNamedValue(nv); !errors.Is(err, driver.ErrSkip) {
			t.Errorf("CheckNamedValue = %v, want driver.ErrSkip", err)
		}
		if err := dc.(driver.SessionResetter).ResetSession(ctx); err != nil {
			t.Errorf("ResetSession = %v, want nil", err)
		}
		opts := driver.TxOptions{Isolation: driver.IsolationLevel(sql.LevelSerializable)}
		if _, err := dc.(driver.ConnBeginTx).BeginTx(ctx, opts); err == nil {
			t.Error("BeginTx with serializable isolation succeeded, want an error")
		}
		// The methods of driver.Conn itself.
		//lint:ignore SA1019 the wrapper must still have Begin
		tx, err := dc.Begin()
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Errorf("Commit: %v", err)
		}
		for range 2 { // the second comes from the cache
			st, err := dc.Prepare(update)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if got := st.NumInput(); got != -1 {
				t.Errorf("NumInput() = %d, want the driver's -1", got)
			}
			st.Close()
		}
		checkCalls(t, s.fc, map[string]int{"Begin": 1, "Commit": 1, "Prepare " + update: 1})
	})
}

// TestRawReachesDriverConn shows that sql.Conn.Raw reaches the driver's own
// conn, the one the Opener made for the backend serving the sql.Conn,
// through Unwrap.
func TestRawReachesDriverConn(t *testing.T) {
	t.Parallel()
	for _, kind := range []struct {
		name string
		kind connKind
	}{{"context methods only", ctxKind}, {"full", fullKind}, {"base only", baseKind}} {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{kind: kind.kind}
				c := newConnector(t, o, onePerBackend(3), backends(3)...)
				db := openDB(t, c)
				synctest.Wait()
				ctx := t.Context()
				queryBackend(t, ctx, db) // so the sql.Conn is not on the first backend
				conn, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				answer := queryBackend(t, ctx, conn)
				err = conn.Raw(func(dc any) error {
					u, ok := dc.(interface{ Unwrap() driver.Conn })
					if !ok {
						t.Errorf("Raw gave %T, which has no Unwrap() driver.Conn", dc)
						return nil
					}
					inner := u.Unwrap()
					fc := o.find(inner)
					if fc == nil {
						t.Errorf("Unwrap() = %T %p, not a conn the Opener made", inner, inner)
						return nil
					}
					if got := fc.name(); got != answer {
						t.Errorf("Unwrap() is connection %s, want %s, which serves the sql.Conn", got, answer)
					}
					if kind.kind == ctxKind {
						if _, ok := inner.(driver.QueryerContext); !ok {
							t.Errorf("Unwrap() = %T, want the driver's own conn", inner)
						}
					}
					return nil
				})
				if err != nil {
					t.Errorf("Raw: %v", err)
				}
			})
		})
	}

	t.Run("no connection claimed", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			o := &fakeOpener{}
			c := newConnector(t, o, onePerBackend(1), backends(1)...)
			dc, err := c.Connect(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			u := dc.(interface{ Unwrap() driver.Conn })
			if u.Unwrap() != o.opened()[0].dc {
				t.Errorf("Unwrap() = %v, want the claimed driver conn", u.Unwrap())
			}
			dc.(driver.Validator).IsValid() // gives the connection back
			if got := u.Unwrap(); got != nil {
				t.Errorf("Unwrap() with no connection claimed = %v, want nil", got)
			}
			if got := claimed(c); got != 0 {
				t.Errorf("%d connections claimed after IsValid, want 0", got)
			}
			dc.Close()
		})
	})
}

// TestRepeatableQueryRetried: a query declared safe to repeat, whose
// connection dies under it before any row, runs again on another backend;
// without the declaration the caller sees the error.
func TestRepeatableQueryRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     func(context.Context) context.Context
		retried bool
	}{
		{"plain", func(ctx context.Context) context.Context { return ctx }, false},
		{"Repeatable", Repeatable, true},
		{"replica role", func(ctx context.Context) context.Context { return WithRole(ctx, RoleReplica) }, true},
		{"prefer-replica role", func(ctx context.Context) context.Context { return WithRole(ctx, RolePreferReplica) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				bs := backends(3)
				c := newConnector(t, o, onePerBackend(len(bs)), bs...)
				db := openDB(t, c)
				synctest.Wait()
				o.failNext(io.ErrUnexpectedEOF)
				var addr string
				err := db.QueryRowContext(tt.ctx(t.Context()), "SELECT backend").Scan(&addr)
				if tt.retried {
					if err != nil {
						t.Fatalf("repeatable query = %v, want it run again on another backend", err)
					}
					var failed string
					for _, fc := range o.opened() {
						if fc.faults.Load() > 0 {
							failed = fc.backend
						}
					}
					if backendOf(addr) == failed {
						t.Errorf("the retry ran on %s, the backend whose connection died", failed)
					}
				} else if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("query = %v, want the connection's error", err)
				}
			})
		})
	}
}

// TestWriteOnReadOnlyServer: a write that meets a server which has turned
// read-only (a failover demoted it) fails with the server's error, keeps
// its connection, and makes the pool take the backend for a replica at
// once; the next write waits for the new primary and runs there.
func TestWriteOnReadOnlyServer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		a, b := bs[0].Addr, bs[1].Addr
		o := &fakeOpener{replicates: true}
		o.setRole(a, resolver.RolePrimary)
		o.setRole(b, resolver.RoleReplica)
		c := newConnector(t, o, pool.Policy{MaxSlots: 2, MaxPerBackend: 1, HealthInterval: time.Minute, ClaimTimeout: 5 * time.Minute}, bs...)
		db := openDB(t, c)
		synctest.Wait()
		write := WithRole(t.Context(), RolePrimary)
		if _, err := db.ExecContext(write, update); err != nil {
			t.Fatalf("write before the failover: %v", err)
		}
		if got := o.calls()[a]["Exec "+update]; got != 1 {
			t.Fatalf("write before the failover ran %d times on the primary %s, want once", got, a)
		}

		o.setRole(a, resolver.RoleReplica)
		o.setRole(b, resolver.RolePrimary)
		if _, err := db.ExecContext(write, update); !errors.Is(err, errReadOnly) {
			t.Fatalf("write on the demoted primary = %v, want its read-only error", err)
		}
		if got := o.calls()[a]["Exec "+update]; got != 2 {
			t.Errorf("the write reached the demoted primary %s %d times, want once", a, got-1)
		}
		synctest.Wait() // no time passes: no periodic health check runs
		if got := backendStats(t, c, a).Backend.Role; got != resolver.RoleReplica {
			t.Errorf("after the read-only error, the pool takes %s for %v, want replica", a, got)
		}
		if got := o.connects(a); got != 1 || o.conn(a, 1).closed.Load() {
			t.Errorf("%s: %d connections opened, the first closed = %v; want its connection kept", a, got, o.conn(a, 1).closed.Load())
		}

		if _, err := db.ExecContext(write, update); err != nil {
			t.Fatalf("write after the failover: %v", err)
		}
		if got := o.calls()[b]["Exec "+update]; got != 1 {
			t.Errorf("write after the failover ran %d times on the new primary %s, want once", got, b)
		}
	})
}
