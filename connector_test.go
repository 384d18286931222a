package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// TestOperationsSpreadOverBackends shows DESIGN decision 1: every
// operation claims a connection when it starts and gives it back when it
// ends, so operations issued one after another spread evenly over the
// backends although database/sql keeps its handles idle, and no claim is
// left outstanding between operations. It holds for sql.Open and
// sql.OpenDB alike, with no extra call by the user.
func TestOperationsSpreadOverBackends(t *testing.T) {
	t.Parallel()
	const nBackends, ops = 3, 30
	tests := []struct {
		name string
		// open returns the DB, and the Connector when the test can reach it.
		open func(t *testing.T, o *fakeOpener, bs []resolver.Backend) (*sql.DB, *Connector)
	}{
		{"sql.OpenDB", func(t *testing.T, o *fakeOpener, bs []resolver.Backend) (*sql.DB, *Connector) {
			c := newConnector(t, o, onePerBackend(len(bs)), bs...)
			return openDB(t, c), c
		}},
		{"sql.Open", func(t *testing.T, o *fakeOpener, bs []resolver.Backend) (*sql.DB, *Connector) {
			hosts := make([]string, len(bs))
			for i, b := range bs {
				hosts[i] = b.Addr
			}
			dsn := "fake://app:s3cret@" + strings.Join(hosts, ",") + "/appdb?pool_max_conns=3&pool_max_conns_per_backend=1&fake_opener=" + registerOpener(t, o)
			db, err := sql.Open("qorb", dsn)
			if err != nil {
				t.Fatalf("sql.Open: %v", err)
			}
			t.Cleanup(func() {
				db.Close()
				if n := o.open.Load(); n != 0 {
					t.Errorf("%d connections open after DB.Close, want 0", n)
				}
			})
			return db, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				bs := backends(nBackends)
				o := &fakeOpener{}
				db, c := tt.open(t, o, bs)
				synctest.Wait() // let the pool open its connections
				ctx := t.Context()
				served := map[string]int{}
				for i := range ops {
					rows, err := db.QueryContext(ctx, "SELECT backend")
					if err != nil {
						t.Fatalf("query %d: %v", i, err)
					}
					if c != nil && claimed(c) != 1 {
						t.Errorf("query %d: %d connections claimed while its rows are open, want 1", i, claimed(c))
					}
					var addr string
					for rows.Next() {
						if err := rows.Scan(&addr); err != nil {
							t.Fatal(err)
						}
					}
					if err := rows.Close(); err != nil {
						t.Fatal(err)
					}
					served[backendOf(addr)]++
					if c != nil && claimed(c) != 0 {
						t.Errorf("after query %d: %d connections claimed, want 0", i, claimed(c))
					}
					if got, want := sum(o.recycles()), i+1; got != want {
						t.Errorf("after query %d: connections given back %d times, want %d", i, got, want)
					}
				}
				for _, b := range bs {
					if got, want := served[b.Addr], ops/nBackends; got != want {
						t.Errorf("backend %s served %d of %d queries, want %d (all: %v)", b.Addr, got, ops, want, served)
					}
				}
				// database/sql did keep a handle idle all along: the spread
				// is not because it opened a new conn for each query.
				if st := db.Stats(); st.Idle == 0 || st.OpenConnections > 2 {
					t.Errorf("db.Stats() = %d open, %d idle; want database/sql to keep its handle idle", st.OpenConnections, st.Idle)
				}
				if got, want := len(o.opened()), nBackends; got != want {
					t.Errorf("opened %d physical connections, want %d", got, want)
				}
			})
		})
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestConnAndTxKeepOneConnection shows that a sql.Conn and a sql.Tx keep
// one physical connection, and so one backend, for every statement they
// run, and give it back when they end.
func TestConnAndTxKeepOneConnection(t *testing.T) {
	t.Parallel()
	type held interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}
	tests := []struct {
		name  string
		begin func(ctx context.Context, db *sql.DB) (held, func() error, error)
	}{
		{"sql.Conn", func(ctx context.Context, db *sql.DB) (held, func() error, error) {
			c, err := db.Conn(ctx)
			if err != nil {
				return nil, nil, err
			}
			return c, c.Close, nil
		}},
		{"sql.Tx commit", func(ctx context.Context, db *sql.DB) (held, func() error, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, nil, err
			}
			return tx, tx.Commit, nil
		}},
		{"sql.Tx rollback", func(ctx context.Context, db *sql.DB) (held, func() error, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, nil, err
			}
			return tx, tx.Rollback, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				// Two connections per backend, so the operations that
				// run beside the held one could land on its backend too.
				c := newConnector(t, o, pool.Policy{MaxSlots: 6, MaxPerBackend: 2, Spares: 6}, backends(3)...)
				db := openDB(t, c)
				synctest.Wait()
				ctx := t.Context()
				queryBackend(t, ctx, db) // leaves an idle handle in database/sql

				h, end, err := tt.begin(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				first := queryBackend(t, ctx, h)
				others := map[string]bool{}
				for i := range 10 {
					if got := queryBackend(t, ctx, h); got != first {
						t.Fatalf("statement %d ran on connection %s, want %s like the first", i, got, first)
					}
					if got := claimed(c); got != 1 {
						t.Errorf("after statement %d: %d connections claimed, want 1 (the held one)", i, got)
					}
					// An operation beside it claims and gives back its own.
					others[queryBackend(t, ctx, db)] = true
				}
				if others[first] {
					t.Errorf("an operation beside the held connection ran on it (%s)", first)
				}
				if len(others) < 2 {
					t.Errorf("operations beside the held connection used %d connections, want them spread", len(others))
				}
				recycled := sum(o.recycles())
				if err := end(); err != nil {
					t.Fatalf("end: %v", err)
				}
				if got := claimed(c); got != 0 {
					t.Errorf("after the end: %d connections claimed, want 0", got)
				}
				if got := sum(o.recycles()); got != recycled+1 {
					t.Errorf("the end gave connections back %d times, want once", got-recycled)
				}
			})
		})
	}
}

// TestPreparedStatementPreparedOncePerConnection shows that a statement
// prepared with db.Prepare and executed again and again is prepared once
// on each physical connection it runs on, not once per execution, although
// each execution claims a connection anew and they spread over the
// backends.
func TestPreparedStatementPreparedOncePerConnection(t *testing.T) {
	t.Parallel()
	const (
		nBackends = 3
		execs     = 9 // three per backend
		insert    = "INSERT INTO t VALUES (?)"
	)
	tests := []struct {
		name    string
		maxIdle int // for db.SetMaxIdleConns
	}{
		// database/sql keeps the handle, and the statement on it, idle;
		// qorb prepares it on each connection it binds.
		{"idle handles", 2},
		// database/sql opens a handle for each execution and prepares
		// the statement on it; qorb finds it in the connection's cache.
		{"no idle handles", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				c := newConnector(t, o, onePerBackend(nBackends), backends(nBackends)...)
				db := openDB(t, c)
				db.SetMaxIdleConns(tt.maxIdle)
				synctest.Wait()
				ctx := t.Context()

				st, err := db.PrepareContext(ctx, insert)
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				for i := range execs {
					if _, err := st.ExecContext(ctx, i); err != nil {
						t.Fatalf("execution %d: %v", i, err)
					}
					if got := claimed(c); got != 0 {
						t.Errorf("after execution %d: %d connections claimed, want 0", i, got)
					}
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				for _, b := range c.Stats().Backends {
					// One claim for db.Prepare, on one backend.
					if b.Claims < execs/nBackends {
						t.Errorf("backend %s served %d claims, want at least %d", b.Backend.Addr, b.Claims, execs/nBackends)
					}
				}
				// Closing the connections closes their cached statements.
				// Each connection prepared the statement once, ran its
				// share of the executions with it, and nothing else.
				if err := db.Close(); err != nil {
					t.Fatalf("db.Close: %v", err)
				}
				for _, fc := range o.opened() {
					checkCalls(t, fc, map[string]int{
						"Prepare " + insert:    1,
						"Stmt.Exec " + insert:  execs / nBackends,
						"Stmt.Close " + insert: 1,
					})
				}
				if got, want := len(o.opened()), nBackends; got != want {
					t.Errorf("opened %d connections, want %d", got, want)
				}
			})
		})
	}
}

// TestConnectNeverReturnsErrBadConn shows DESIGN decision 2: when no
// connection can be had, Connect fails with the pool's typed error, which
// names every backend and what it last did, and never with ErrBadConn,
// which would make database/sql claim, and wait, again. (Only a claim
// whose every connection failed the driver's session check wraps
// ErrBadConn: see TestRouterSessionCheck.)
func TestConnectNeverReturnsErrBadConn(t *testing.T) {
	t.Parallel()
	refused := errors.New("dial tcp: connection refused")
	tests := []struct {
		name    string
		opener  func() *fakeOpener
		pol     pool.Policy
		timeout time.Duration // of the caller's context; 0: none
		want    []error
		detail  string // in the message, besides every backend's address
	}{
		{
			name:   "claim timeout while backends hang",
			opener: func() *fakeOpener { return &fakeOpener{hang: true} },
			pol:    pool.Policy{ClaimTimeout: time.Second},
			want:   []error{pool.ErrClaimTimeout},
			detail: "connecting",
		},
		{
			name:    "caller's deadline first",
			opener:  func() *fakeOpener { return &fakeOpener{hang: true} },
			timeout: 100 * time.Millisecond,
			want:    []error{pool.ErrClaimTimeout, context.DeadlineExceeded},
			detail:  "connecting",
		},
		{
			name: "every backend refuses",
			opener: func() *fakeOpener {
				return &fakeOpener{connectErr: func(resolver.Backend) error { return refused }}
			},
			want:   []error{pool.ErrNoBackendsOnline},
			detail: refused.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				bs := backends(3)
				c := newConnector(t, tt.opener(), tt.pol, bs...)
				db := openDB(t, c)
				// newCtx returns a fresh context for each attempt.
				newCtx := func() context.Context {
					if tt.timeout == 0 {
						return t.Context()
					}
					ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
					t.Cleanup(cancel)
					return ctx
				}
				dc, cerr := c.Connect(newCtx())
				if dc != nil {
					t.Errorf("Connect returned a connection with error %v", cerr)
				}
				perr := db.PingContext(newCtx())
				for name, err := range map[string]error{"Connect": cerr, "db.PingContext": perr} {
					if err == nil {
						t.Errorf("%s succeeded, want an error", name)
						continue
					}
					for _, w := range tt.want {
						if !errors.Is(err, w) {
							t.Errorf("%s = %v, want it to wrap %v", name, err, w)
						}
					}
					if errors.Is(err, driver.ErrBadConn) {
						t.Errorf("%s = %v, which wraps driver.ErrBadConn", name, err)
					}
					var ce *pool.ClaimError
					if !errors.As(err, &ce) {
						t.Errorf("%s = %T, want a *pool.ClaimError", name, err)
					}
					msg := err.Error()
					for _, b := range bs {
						if !strings.Contains(msg, b.Addr) {
							t.Errorf("%s = %q, want it to name backend %s", name, msg, b.Addr)
						}
					}
					if !strings.Contains(msg, tt.detail) {
						t.Errorf("%s = %q, want it to say %q", name, msg, tt.detail)
					}
				}
			})
		})
	}
}

// TestDBCloseClosesEveryConnection shows DESIGN decisions 8 and 12:
// db.Close closes the Connector, which returns at once, as database/sql's
// own Close does, closes every idle physical connection, and closes one
// still in use (a sql.Conn or Rows the program forgot) when it is
// released; every goroutine stops (synctest.Test fails if one is left).
// The Connector's Close may be called again.
func TestDBCloseClosesEveryConnection(t *testing.T) {
	t.Parallel()
	for _, hold := range []string{"", "conn", "rows"} {
		t.Run("hold="+hold, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				c, db := startClosable(t, o, 2*time.Second)
				ctx := t.Context()
				var release func() error
				switch hold {
				case "conn":
					conn, err := db.Conn(ctx)
					if err != nil {
						t.Fatal(err)
					}
					queryBackend(t, ctx, conn)
					release = conn.Close
				case "rows":
					rows, err := db.QueryContext(ctx, "SELECT backend")
					if err != nil {
						t.Fatal(err)
					}
					release = rows.Close
				}
				start := time.Now()
				if err := db.Close(); err != nil {
					t.Errorf("db.Close = %v, want nil", err)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("db.Close took %v, want no wait", d)
				}
				want := int64(0)
				if release != nil {
					want = 1
				}
				if got := o.open.Load(); got != want {
					t.Errorf("%d connections open after db.Close, want %d (those in use)", got, want)
				}
				if release != nil {
					if err := release(); err != nil {
						t.Errorf("closing the %s after db.Close: %v", hold, err)
					}
					if got := o.open.Load(); got != 0 {
						t.Errorf("%d connections open after the last one in use was released, want 0", got)
					}
				}
				if err := c.Close(); err != nil {
					t.Errorf("second Connector.Close = %v, want nil", err)
				}
				if _, err := c.Connect(ctx); !errors.Is(err, pool.ErrClosed) || errors.Is(err, driver.ErrBadConn) {
					t.Errorf("Connect after Close = %v, want pool.ErrClosed and not driver.ErrBadConn", err)
				}
			})
		})
	}
}

// startClosable starts a connector over 3 fake backends with connections
// open to each, with the given close timeout.
func startClosable(t *testing.T, o *fakeOpener, closeTimeout time.Duration) (*Connector, *sql.DB) {
	t.Helper()
	r, err := resolver.NewStatic(backends(3)...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConnector(Config{Opener: o, Resolver: r, Settings: Settings{
		Policy:       pool.Policy{MaxSlots: 6, MaxPerBackend: 2, Spares: 6},
		CloseTimeout: closeTimeout,
	}})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	synctest.Wait()
	for range 6 {
		queryBackend(t, t.Context(), db)
	}
	if o.open.Load() == 0 {
		t.Fatal("no connection open")
	}
	return c, db
}

// TestShutdownWaits shows Connector.Shutdown: it waits for a connection
// still in use, until it is released or, at the latest, until its
// context ends, or the close timeout passes when the context has no
// deadline; then it closes it.
func TestShutdownWaits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// giveBack: the connection in use is released while Shutdown
		// waits; otherwise Shutdown closes it when its wait ends.
		giveBack bool
		// deadline: Shutdown's context has one, shorter than the close
		// timeout; zero: none.
		deadline time.Duration
		wantWait time.Duration
	}{
		{name: "given back", giveBack: true, wantWait: time.Second},
		{name: "past the close timeout", wantWait: 2 * time.Second},
		{name: "past the context's deadline", deadline: 500 * time.Millisecond, wantWait: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				c, db := startClosable(t, o, 2*time.Second)
				ctx := t.Context()
				conn, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				queryBackend(t, ctx, conn)
				sctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					sctx, cancel = context.WithTimeout(sctx, tt.deadline)
					defer cancel()
				}
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- c.Shutdown(sctx) }()
				synctest.Wait()
				if got := o.open.Load(); got != 1 {
					t.Errorf("%d connections open while Shutdown waits, want only the one in use", got)
				}
				if _, err := db.ExecContext(ctx, "new work"); !errors.Is(err, pool.ErrClosed) {
					t.Errorf("operation during Shutdown: %v, want pool.ErrClosed", err)
				}
				if tt.giveBack {
					time.Sleep(time.Second)
					if err := conn.Close(); err != nil {
						t.Errorf("conn.Close: %v", err)
					}
				}
				err = <-done
				if d := time.Since(start); d != tt.wantWait {
					t.Errorf("Shutdown took %v, want %v", d, tt.wantWait)
				}
				if tt.giveBack {
					if err != nil {
						t.Errorf("Shutdown = %v, want nil", err)
					}
				} else {
					if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "closed 1 connections still claimed") {
						t.Errorf("Shutdown = %v, want DeadlineExceeded saying it closed 1 connection still claimed", err)
					}
					if cerr := conn.Close(); cerr != nil {
						t.Errorf("conn.Close after Shutdown: %v", cerr)
					}
				}
				if got := o.open.Load(); got != 0 {
					t.Errorf("%d connections open after Shutdown, want 0", got)
				}
				if err := db.Close(); err != nil {
					t.Errorf("db.Close after Shutdown = %v, want nil", err)
				}
			})
		})
	}
}

// TestRoles shows that an operation uses only the backends of the role its
// context asks for, or of the connector's default role, and that a
// backend whose role is not known serves any role.
func TestRoles(t *testing.T) {
	t.Parallel()
	bs := backends(4)
	bs[0].Role = resolver.RolePrimary
	bs[1].Role = resolver.RoleReplica
	bs[2].Role = resolver.RoleReplica
	// bs[3]'s role is unknown.
	primary, replicas, unknown := bs[0].Addr, []string{bs[1].Addr, bs[2].Addr}, bs[3].Addr
	tests := []struct {
		name    string
		def     Role  // the connector's default role
		ctxRole *Role // the context's, if any
		want    []string
	}{
		{"default any", RoleAny, nil, []string{primary, replicas[0], replicas[1], unknown}},
		{"context primary", RoleAny, ptr(RolePrimary), []string{primary}}, // unknown takes writes only with no primary known
		{"context replica", RoleAny, ptr(RoleReplica), []string{replicas[0], replicas[1], unknown}},
		{"context prefer-replica", RoleAny, ptr(RolePreferReplica), []string{replicas[0], replicas[1], unknown}},
		{"default replica", RoleReplica, nil, []string{replicas[0], replicas[1], unknown}},
		{"default replica, context primary", RoleReplica, ptr(RolePrimary), []string{primary}},
		{"default primary, context any", RolePrimary, ptr(RoleAny), []string{primary, replicas[0], replicas[1], unknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := &fakeOpener{}
				r, err := resolver.NewStatic(bs...)
				if err != nil {
					t.Fatal(err)
				}
				c, err := NewConnector(Config{Opener: o, Resolver: r, Settings: Settings{Policy: onePerBackend(len(bs)), DefaultRole: tt.def}})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				db := sql.OpenDB(c)
				defer db.Close()
				synctest.Wait()
				ctx := t.Context()
				if tt.ctxRole != nil {
					ctx = WithRole(ctx, *tt.ctxRole)
				}
				served := map[string]int{}
				for range 4 * len(tt.want) {
					served[backendOf(queryBackend(t, ctx, db))]++
				}
				for _, addr := range tt.want {
					if served[addr] != 4 {
						t.Errorf("backend %s served %d queries, want 4 (all: %v)", addr, served[addr], served)
					}
				}
				if len(served) != len(tt.want) {
					t.Errorf("queries went to %v, want only %v", served, tt.want)
				}
			})
		})
	}

	// A replica, or the primary when no replica is online.
	t.Run("prefer-replica with no replica online", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			bs := backends(2)
			bs[0].Role, bs[1].Role = resolver.RolePrimary, resolver.RoleReplica
			o := &fakeOpener{
				connectErr: func(b resolver.Backend) error {
					if b.Role == resolver.RoleReplica {
						return errors.New("connection refused")
					}
					return nil
				},
			}
			c := newConnector(t, o, onePerBackend(2), bs...)
			db := openDB(t, c)
			time.Sleep(time.Second) // the replica goes offline after its first attempts fail
			synctest.Wait()
			if h := backendStats(t, c, bs[1].Addr).Health; h != pool.HealthOffline {
				t.Fatalf("replica is %v, want offline", h)
			}
			ctx := WithRole(t.Context(), RolePreferReplica)
			if got := backendOf(queryBackend(t, ctx, db)); got != bs[0].Addr {
				t.Errorf("prefer-replica query ran on %s, want the primary %s", got, bs[0].Addr)
			}
			// A claim for a role no online backend has waits, like any
			// claim, and then says which role was missing.
			ctx, cancel := context.WithTimeout(WithRole(t.Context(), RoleReplica), 2*time.Second)
			defer cancel()
			err := db.QueryRowContext(ctx, "SELECT backend").Scan(new(string))
			if !errors.Is(err, pool.ErrClaimTimeout) || !strings.Contains(err.Error(), "no replica backend") {
				t.Errorf("replica query = %v, want pool.ErrClaimTimeout saying no replica backend", err)
			}
		})
	})
}

func ptr[T any](v T) *T { return &v }

func TestRoleString(t *testing.T) {
	t.Parallel()
	for r, want := range map[Role]string{RoleAny: "any", RolePrimary: "primary", RoleReplica: "replica", RolePreferReplica: "prefer-replica", Role(9): "role(9)"} {
		if got := r.String(); got != want {
			t.Errorf("Role(%d).String() = %q, want %q", uint8(r), got, want)
		}
	}
}

// TestFullResetForgetsStatements shows that with pool_reset_session the
// statement cache is emptied each time a connection comes back, since a
// full reset (DISCARD ALL) forgets prepared statements on the server: each
// execution prepares again, and every statement is closed.
func TestFullResetForgetsStatements(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const execs = 3
		o := &fakeOpener{}
		c := newConnectorWith(t, o, Settings{Policy: onePerBackend(1), Reset: true}, backends(1)...)
		db := openDB(t, c)
		synctest.Wait()
		ctx := t.Context()
		st, err := db.PrepareContext(ctx, update)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for range execs {
			if _, err := st.ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait() // the last recycle runs in the background
		fc := o.opened()[0]
		if got, want := o.recycles()[fc.backend], 1+execs; got != want {
			t.Errorf("connection recycled %d times, want %d", got, want)
		}
		// The statement was prepared once per claim, and each was closed,
		// the last by the last recycle.
		checkCalls(t, fc, map[string]int{
			"Prepare " + update:    1 + execs,
			"Stmt.Exec " + update:  execs,
			"Stmt.Close " + update: 1 + execs,
		})
	})
}

// TestHealthCheckUsesOpenerPing shows that the pool checks idle
// connections with the Opener's Ping, and replaces one whose check fails.
func TestHealthCheckUsesOpenerPing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := backends(1)[0]
		o := &fakeOpener{}
		c := newConnector(t, o, pool.Policy{MaxSlots: 1, MaxPerBackend: 1, HealthInterval: time.Minute}, b)
		synctest.Wait()
		time.Sleep(2 * time.Minute) // virtual time: at least one check is due
		synctest.Wait()
		if o.pings.Load() == 0 {
			t.Fatal("no health check called Opener.Ping")
		}
		if got := o.connects(b.Addr); got != 1 {
			t.Errorf("%d connections opened while checks passed, want 1", got)
		}
		o.pingFail.Store(true)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := o.connects(b.Addr); got < 2 {
			t.Errorf("%d connections opened after a check failed, want the failed one replaced", got)
		}
		if st := backendStats(t, c, b.Addr); !strings.Contains(st.LastError, errPing.Error()) {
			t.Errorf("LastError = %q, want the ping's error", st.LastError)
		}
		o.pingFail.Store(false)
	})
}

// TestConcurrentOperations runs operations from many goroutines at once
// (under -race): each succeeds, every backend serves, the pool never
// opens more than its cap, and no claim is left when they are done.
func TestConcurrentOperations(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const goroutines, each = 32, 10
		bs := backends(3)
		o := &fakeOpener{}
		c := newConnector(t, o, pool.Policy{MaxSlots: 6, MaxPerBackend: 2}, bs...)
		db := openDB(t, c)
		synctest.Wait()
		errs := make(chan error, goroutines)
		answers := make(chan string, goroutines*each)
		for range goroutines {
			go func() {
				for range each {
					var a string
					if err := db.QueryRowContext(t.Context(), "SELECT backend").Scan(&a); err != nil {
						errs <- err
						return
					}
					answers <- a
				}
				errs <- nil
			}()
		}
		for range goroutines {
			if err := <-errs; err != nil {
				t.Errorf("query: %v", err)
			}
		}
		close(answers)
		served := map[string]int{}
		for a := range answers {
			served[backendOf(a)]++
		}
		for _, b := range bs {
			if served[b.Addr] == 0 {
				t.Errorf("backend %s served no query (all: %v)", b.Addr, served)
			}
		}
		if got := claimed(c); got != 0 {
			t.Errorf("%d connections claimed after every operation ended, want 0", got)
		}
		if got := len(o.opened()); got > 6 {
			t.Errorf("opened %d connections, want at most the cap of 6", got)
		}
	})
}

func TestConnectorOf(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := &fakeOpener{}
		c := newConnector(t, o, onePerBackend(1), backends(1)...)
		db := openDB(t, c)
		got, err := ConnectorOf(db)
		if err != nil || got != c {
			t.Errorf("ConnectorOf = %p, %v; want %p", got, err, c)
		}
	})
}

// TestConnectorOfClaimsNothing: ConnectorOf finds the Connector behind a
// database from sql.Open at once, without a connection: when every
// backend is down too.
func TestConnectorOfClaimsNothing(t *testing.T) {
	o := &fakeOpener{connectErr: func(resolver.Backend) error { return errors.New("connection refused") }}
	db, err := sql.Open("qorb", "fake://u@127.0.0.1:7001,127.0.0.1:7002/d?fake_opener="+registerOpener(t, o))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := ConnectorOf(db)
	if err != nil {
		t.Fatalf("ConnectorOf with every backend down: %v", err)
	}
	if st := c.Stats(); st.MaxSlots == 0 {
		t.Errorf("Stats of the connector found: %+v", st)
	}
	if got := c.Stats(); got.Failures != 0 {
		t.Errorf("ConnectorOf made %d claims fail, want none", got.Failures)
	}
	other := sql.OpenDB(otherConnector{})
	defer other.Close()
	if _, err := ConnectorOf(other); err == nil {
		t.Errorf("ConnectorOf of another driver's database succeeded")
	}
}

// otherConnector is a driver.Connector that is not qorb's.
type otherConnector struct{}

func (otherConnector) Connect(context.Context) (driver.Conn, error) { return nil, errors.New("no") }
func (otherConnector) Driver() driver.Driver                        { return otherDriver{} }

type otherDriver struct{}

func (otherDriver) Open(string) (driver.Conn, error) { return nil, errors.New("no") }
