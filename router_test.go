package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// routeServer is a fake database server of the router tests: what its
// role query and position query answer, which a test changes.
type routeServer struct {
	mu      sync.Mutex
	role    resolver.Role
	pos     int
	posErr  error // what the position query fails with, if set
	execErr error // what every statement fails with, if set
}

func (s *routeServer) set(f func(*routeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *routeServer) get() routeServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return routeServer{role: s.role, pos: s.pos, posErr: s.posErr, execErr: s.execErr}
}

// routeOpener is an Opener and Replicator over routeServers, keyed by
// address. Positions are decimal numbers (numReplicator).
type routeOpener struct {
	numReplicator
	servers map[string]*routeServer
	// badResets is how many ResetSession calls, on any connection, fail
	// with resetErr before the rest succeed.
	badResets atomic.Int64
	resetErr  error
	open      atomic.Int64 // connections not closed
	positions atomic.Int64 // position queries
}

var errRouteReadOnly = errors.New("fake: cannot execute in a read-only transaction")

func (o *routeOpener) Connect(_ context.Context, b resolver.Backend) (driver.Conn, error) {
	o.open.Add(1)
	return &routeConn{o: o, srv: o.servers[b.Addr]}, nil
}
func (o *routeOpener) Ping(context.Context, driver.Conn) error          { return nil }
func (o *routeOpener) Recycle(context.Context, driver.Conn, bool) error { return nil }
func (o *routeOpener) Role(_ context.Context, c driver.Conn) (resolver.Role, error) {
	return c.(*routeConn).srv.get().role, nil
}
func (o *routeOpener) Position(_ context.Context, c driver.Conn) (string, error) {
	o.positions.Add(1)
	s := c.(*routeConn).srv.get()
	return strconv.Itoa(s.pos), s.posErr
}
func (o *routeOpener) ReadOnly(err error) bool { return errors.Is(err, errRouteReadOnly) }

// routeConn is a connection to a routeServer.
type routeConn struct {
	o      *routeOpener
	srv    *routeServer
	closed atomic.Bool
}

func (c *routeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no Prepare") }
func (c *routeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake: no Begin") }
func (c *routeConn) Close() error {
	if !c.closed.Swap(true) {
		c.o.open.Add(-1)
	}
	return nil
}
func (c *routeConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	if err := c.srv.get().execErr; err != nil {
		return nil, err
	}
	return driver.RowsAffected(1), nil
}
func (c *routeConn) ResetSession(context.Context) error {
	if c.o.badResets.Add(-1) >= 0 {
		return c.o.resetErr
	}
	return nil
}

// The fake cluster of the router tests: a primary and two replicas, all at
// position 10, whose roles the pool learns from the servers themselves.
var (
	routeBackends = backends(3)
	primaryAddr   = routeBackends[0].Addr
	replicaAddrs  = []string{routeBackends[1].Addr, routeBackends[2].Addr}
)

// newRouteCluster starts a Connector over the fake cluster with settings
// s, and closes it when the test ends. Call it inside a synctest bubble.
func newRouteCluster(t *testing.T, s Settings) (*Connector, *routeOpener) {
	t.Helper()
	o := &routeOpener{servers: map[string]*routeServer{
		primaryAddr:     {role: resolver.RolePrimary, pos: 10},
		replicaAddrs[0]: {role: resolver.RoleReplica, pos: 10},
		replicaAddrs[1]: {role: resolver.RoleReplica, pos: 10},
	}}
	if s.Policy.MaxSlots == 0 {
		s.Policy.MaxSlots, s.Policy.MaxPerBackend = 3, 1
	}
	c := startConnector(t, o, &o.open, s, routeBackends...)
	synctest.Wait() // every connection open, every role learned
	return c, o
}

// claimAddr claims a connection through the router for ctx and gives it
// back; it returns the backend's address, or the claim's error.
func claimAddr(ctx context.Context, c *Connector) (string, error) {
	cl, err := c.router.claim(ctx)
	if err != nil {
		return "", err
	}
	defer cl.Release()
	return cl.Backend().Addr, nil
}

// servedBy claims n times for ctx and returns the set of addresses that
// served; a claim that fails within a second of fake time adds "error".
func servedBy(t *testing.T, ctx context.Context, c *Connector, n int) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		addr, err := claimAddr(cctx, c)
		cancel()
		if err != nil {
			addr = "error"
		}
		got[addr] = true
	}
	return got
}

func set(addrs ...string) map[string]bool {
	m := map[string]bool{}
	for _, a := range addrs {
		m[a] = true
	}
	return m
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestRouterFilters shows where each role's claims go, once the pool has
// learned the servers' roles, and that a replica whose position cannot be
// read counts as lagging: it serves no replica reads under pool_max_lag.
func TestRouterFilters(t *testing.T) {
	all := append([]string{primaryAddr}, replicaAddrs...)
	tests := []struct {
		name   string
		asked  Role
		broken bool // replicas[1]'s position query fails
		want   []string
	}{
		{"any", RoleAny, false, all},
		{"primary", RolePrimary, false, []string{primaryAddr}},
		{"replica", RoleReplica, false, replicaAddrs},
		{"prefer-replica", RolePreferReplica, false, replicaAddrs},
		{"replica, one of unknown position", RoleReplica, true, replicaAddrs[:1]},
		{"any, one of unknown position", RoleAny, true, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, o := newRouteCluster(t, Settings{MaxLag: time.Second})
				if tt.broken {
					o.servers[replicaAddrs[1]].set(func(s *routeServer) { s.posErr = errors.New("fake: no position") })
					c.pool.Recheck(routeBackends[2].Key())
					synctest.Wait()
				}
				if got := servedBy(t, WithRole(t.Context(), tt.asked), c, 30); !sameSet(got, set(tt.want...)) {
					t.Errorf("%v claims served by %v, want %v", tt.asked, got, tt.want)
				}
			})
		})
	}

	t.Run("prefer-replica with every replica lagging", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, o := newRouteCluster(t, Settings{MaxLag: time.Second})
			for i, a := range replicaAddrs {
				o.servers[a].set(func(s *routeServer) { s.posErr = errors.New("fake: no position") })
				c.pool.Recheck(routeBackends[1+i].Key())
			}
			synctest.Wait()
			ctx := t.Context()
			if got, want := servedBy(t, WithRole(ctx, RolePreferReplica), c, 10), set(primaryAddr); !sameSet(got, want) {
				t.Errorf("prefer-replica claims served by %v, want %v", got, want)
			}
			if got, want := servedBy(t, WithRole(ctx, RoleReplica), c, 1), set("error"); !sameSet(got, want) {
				t.Errorf("replica claims served by %v, want none", got)
			}
		})
	})
}

// TestRouterLagLine shows that a replica counts as lagging from the
// instant its lag passes pool_max_lag, with no health check then, and that
// the pool is told when it crosses the line either way: a replica claim
// queued while the only replica lagged gets a connection as soon as a
// health check finds it caught up, not when that connection is next
// checked or released.
func TestRouterLagLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxLag = time.Second
		// One replica with two connections; no periodic health checks, so
		// that only the test's observations move positions.
		c, o := newRouteCluster(t, Settings{
			MaxLag: maxLag,
			Policy: pool.Policy{MaxSlots: 6, MaxPerBackend: 2, Spares: 6, HealthInterval: -1},
		})
		replica := replicaAddrs[0]
		o.servers[replicaAddrs[1]].set(func(s *routeServer) { s.role = resolver.RolePrimary })
		c.pool.Recheck(routeBackends[2].Key())
		synctest.Wait()
		ctx := t.Context()
		rctx := WithRole(ctx, RoleReplica)
		// hold claims a connection to addr.
		hold := func(addr string) pool.Claim[*physConn] {
			t.Helper()
			cl, err := c.pool.ClaimFiltered(ctx, func(b resolver.Backend) bool { return b.Addr == addr })
			if err != nil {
				t.Fatal(err)
			}
			return cl
		}
		// observe has a health check read the server of cl's connection.
		observe := func(cl pool.Claim[*physConn]) {
			t.Helper()
			if _, err := c.router.observe(ctx, cl.Conn()); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}

		// The primary moves on; the replica does not replay.
		o.servers[primaryAddr].set(func(s *routeServer) { s.pos = 20 })
		cl := hold(primaryAddr)
		observe(cl)
		cl.Release()
		behindAt := time.Now()
		time.Sleep(maxLag)
		if got := servedBy(t, rctx, c, 4); !sameSet(got, set(replica)) {
			t.Fatalf("replica claims %v after the replica fell behind served by %v, want %s", maxLag, got, replica)
		}
		if !c.router.replica(routeBackends[1]) {
			t.Errorf("replica filter rejects the replica when its lag is exactly %v", maxLag)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if c.router.replica(routeBackends[1]) {
			t.Errorf("replica filter accepts the replica when its lag is %v", time.Since(behindAt))
		}
		if got := servedBy(t, rctx, c, 1); !sameSet(got, set("error")) {
			t.Errorf("replica claim %v after the replica fell behind served by %v, want none", time.Since(behindAt), got)
		}

		// A replica claim queues; a health check of one of the replica's
		// connections finds it caught up, and the other connection goes
		// to the queued claim at once.
		checked := hold(replica)
		done := make(chan string, 1)
		go func() {
			addr, err := claimAddr(rctx, c)
			if err != nil {
				addr = err.Error()
			}
			done <- addr
		}()
		synctest.Wait()
		select {
		case addr := <-done:
			t.Fatalf("replica claim while the replica lags: %s, want it queued", addr)
		default:
		}
		o.servers[replica].set(func(s *routeServer) { s.pos = 20 })
		observe(checked)
		select {
		case addr := <-done:
			if addr != replica {
				t.Errorf("queued replica claim = %s, want %s", addr, replica)
			}
		default:
			t.Error("queued replica claim still waits after the replica caught up")
			checked.Release()
			<-done
		}
		checked.Release()
	})
}

// TestRouterWriteToken shows where a read with a write token goes: to a
// replica last seen past the token; else to one that, asked on the spot,
// has replayed past it; else to the primary, at once.
func TestRouterWriteToken(t *testing.T) {
	tests := []struct {
		name string
		tok  Token
		// moved sets replicas' positions after the health checks read
		// them, so only a position query on the spot sees them.
		moved map[string]int
		asked Role
		want  []string
	}{
		{"seen past it", "10", nil, RoleReplica, replicaAddrs},
		{"asked on the spot", "15", map[string]int{replicaAddrs[1]: 15}, RoleReplica, replicaAddrs[1:]},
		{"no replica is past it", "15", nil, RoleReplica, []string{primaryAddr}},
		{"any role, seen past it", "10", nil, RoleAny, []string{primaryAddr, replicaAddrs[0], replicaAddrs[1]}},
		{"primary", "10", nil, RolePrimary, []string{primaryAddr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, o := newRouteCluster(t, Settings{})
				o.servers[primaryAddr].set(func(s *routeServer) { s.pos = 20 })
				for a, pos := range tt.moved {
					o.servers[a].set(func(s *routeServer) { s.pos = pos })
				}
				ctx := WithWriteToken(WithRole(t.Context(), tt.asked), tt.tok)
				if got := servedBy(t, ctx, c, 30); !sameSet(got, set(tt.want...)) {
					t.Errorf("reads with token %s served by %v, want %v", tt.tok, got, tt.want)
				}
			})
		})
	}
}

// TestRouterReadOnlyError shows that a write refused as read-only makes
// the pool treat its backend as a replica at once, with no health check to
// tell it: primary claims stop going there.
func TestRouterReadOnlyError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, o := newRouteCluster(t, Settings{})
		db := sql.OpenDB(c)
		defer db.Close()
		ctx := t.Context()
		// The primary is demoted behind the pool's back.
		o.servers[primaryAddr].set(func(s *routeServer) { s.execErr = errRouteReadOnly; s.role = resolver.RoleReplica })
		if _, err := db.ExecContext(WithRole(ctx, RolePrimary), "INSERT"); !errors.Is(err, errRouteReadOnly) {
			t.Fatalf("write on the demoted primary = %v, want %v", err, errRouteReadOnly)
		}
		synctest.Wait()
		if got, want := servedBy(t, WithRole(ctx, RolePrimary), c, 1), set("error"); !sameSet(got, want) {
			t.Errorf("primary claims after the read-only error served by %v, want none", got)
		}
		// It serves replica reads: it is the only replica free once the
		// others are held.
		for _, a := range replicaAddrs {
			cl, err := c.pool.ClaimFiltered(ctx, func(b resolver.Backend) bool { return b.Addr == a })
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Release()
		}
		if got, want := servedBy(t, WithRole(ctx, RoleReplica), c, 1), set(primaryAddr); !sameSet(got, want) {
			t.Errorf("replica claims after the read-only error served by %v, want %v", got, want)
		}
		// The next health check asks the role again, and confirms it.
		time.Sleep(time.Minute)
		if got, want := servedBy(t, WithRole(ctx, RolePrimary), c, 1), set("error"); !sameSet(got, want) {
			t.Errorf("primary claims after the next health check served by %v, want none", got)
		}
	})
}

// TestRouterSessionCheck shows the check the pool's acquire hook makes of
// each connection it hands out: a connection whose driver finds its
// session dead is replaced before the operation uses it, and when each of
// the connections a claim takes is dead, the error wraps
// driver.ErrBadConn, so database/sql tries again.
func TestRouterSessionCheck(t *testing.T) {
	refused := errors.New("fake: session gone")
	tests := []struct {
		name      string
		resetErr  error
		badResets int64
		// connectErr is whether Connect fails.
		connectErr bool
	}{
		{"no failure", nil, 0, false},
		{"two dead connections", driver.ErrBadConn, 2, false},
		{"three dead connections", driver.ErrBadConn, 3, true},
		{"three failed checks", refused, 3, true},
		{"five dead connections", driver.ErrBadConn, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, o := newRouteCluster(t, Settings{})
				o.resetErr = tt.resetErr
				o.badResets.Store(tt.badResets)
				dc, err := c.Connect(t.Context())
				if tt.connectErr {
					if err == nil || !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, tt.resetErr) && !strings.Contains(err.Error(), tt.resetErr.Error()) {
						t.Errorf("Connect with %d dead sessions = %v, want an error that wraps driver.ErrBadConn and says %v", tt.badResets, err, tt.resetErr)
					}
				} else if err != nil {
					t.Fatalf("Connect with %d dead sessions = %v", tt.badResets, err)
				} else {
					dc.Close()
				}
				if got := claimed(c); got != 0 {
					t.Errorf("%d connections claimed after Connect, want 0", got)
				}
				synctest.Wait() // replacements open
				var failures uint64
				for _, b := range routeBackends {
					st := backendStats(t, c, b.Addr)
					failures += st.Failures
					if st.Idle != 1 {
						t.Errorf("backend %s has %d connections idle, want 1", b.Addr, st.Idle)
					}
				}
				if dead := min(tt.badResets, 3); failures != uint64(dead) || o.open.Load() != 3 {
					t.Errorf("%d failures counted and %d connections open, want the %d dead ones replaced", failures, o.open.Load(), dead)
				}
				// database/sql sees no failure: it retries what Connect
				// could not do.
				o.badResets.Store(tt.badResets)
				db := sql.OpenDB(c)
				defer db.Close()
				if err := db.PingContext(t.Context()); err != nil {
					t.Errorf("Ping with %d dead sessions = %v", tt.badResets, err)
				}
			})
		})
	}
}

// TestLagHealthInterval shows the health-check interval NewConnector
// derives from pool_max_lag, twice per allowed lag, only when the policy
// leaves it zero: a value the caller set is used as it is.
func TestLagHealthInterval(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration // the policy's
		maxLag   time.Duration
		want     int64 // position queries per connection in 10 s
	}{
		{"derived", 0, 2 * time.Second, 9},
		{"derived, at least 10ms", 0, time.Millisecond, 900},
		{"set longer", 5 * time.Second, 2 * time.Second, 1},
		{"set shorter", 500 * time.Millisecond, 2 * time.Second, 18},
		{"no lag limit", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, o := newRouteCluster(t, Settings{
					MaxLag: tt.maxLag,
					Policy: pool.Policy{MaxSlots: 3, MaxPerBackend: 1, HealthInterval: tt.interval},
				})
				start := o.positions.Load()
				time.Sleep(10 * time.Second)
				got := (o.positions.Load() - start) / 3
				// Each check is up to 10% later than the interval.
				if got < tt.want || got > tt.want+tt.want/10+1 {
					t.Errorf("%d position queries per connection in 10s, want about %d", got, tt.want)
				}
			})
		})
	}
}

// TestRouterClaimAllocs shows that a claim by role costs no allocation,
// with a lag limit too: the replica filter reads a published flag.
func TestRouterClaimAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations")
	}
	synctest.Test(t, func(t *testing.T) {
		c, _ := newRouteCluster(t, Settings{MaxLag: time.Second, Policy: pool.Policy{MaxSlots: 3, MaxPerBackend: 1, HealthInterval: -1}})
		for _, asked := range []Role{RoleAny, RolePrimary, RoleReplica, RolePreferReplica} {
			ctx := WithRole(t.Context(), asked)
			allocs := testing.AllocsPerRun(100, func() {
				cl, err := c.router.claim(ctx)
				if err != nil {
					t.Fatal(err)
				}
				cl.Release()
			})
			if allocs != 0 {
				t.Errorf("a %v claim allocates %v times, want 0", asked, allocs)
			}
		}
	})
}

// TestRouterUnknownRole shows that a backend whose server cannot say its
// role takes writes only while no backend is known to be the primary,
// and reads with the replicas.
func TestRouterUnknownRole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, o := newRouteCluster(t, Settings{})
		unknown := replicaAddrs[1]
		o.servers[unknown].set(func(s *routeServer) { s.role = resolver.RoleUnknown })
		c.pool.SetRole(routeBackends[2].Key(), resolver.RoleUnknown)
		synctest.Wait()
		ctx := t.Context()
		if got, want := servedBy(t, WithRole(ctx, RolePrimary), c, 30), set(primaryAddr); !sameSet(got, want) {
			t.Errorf("with a known primary, primary claims served by %v, want %v", got, want)
		}
		if got, want := servedBy(t, WithRole(ctx, RoleReplica), c, 30), set(replicaAddrs...); !sameSet(got, want) {
			t.Errorf("replica claims served by %v, want %v", got, want)
		}
		// The primary's server cannot say either now: no primary is
		// known, and the backends of unknown role take writes.
		o.servers[primaryAddr].set(func(s *routeServer) { s.role = resolver.RoleUnknown })
		c.pool.SetRole(routeBackends[0].Key(), resolver.RoleUnknown)
		synctest.Wait()
		if got, want := servedBy(t, WithRole(ctx, RolePrimary), c, 30), set(primaryAddr, unknown); !sameSet(got, want) {
			t.Errorf("with no known primary, primary claims served by %v, want %v", got, want)
		}
	})
}
