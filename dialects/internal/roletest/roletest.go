// Package roletest holds the tests both dialects run against their fake
// servers for a server that cannot answer the role query: it is of
// unknown role and stays usable, and only a connection that fails is an
// error.
package roletest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// Answer is how a fake server answers the role query.
type Answer int

// The answers a fake server gives to the role query.
const (
	Error  Answer = iota // an error: no such function or variable
	NoRow                // a result without rows
	HangUp               // the connection closes
)

// Serve starts a fake server that answers the role query with a, counts
// the role queries it gets in asked, answers SELECT 1 with 1, and stops
// when the test ends.
type Serve func(t *testing.T, a Answer, asked *atomic.Int64) resolver.Backend

// Opener is what the tests use of a dialect's Opener.
type Opener interface {
	Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error)
	Ping(ctx context.Context, c driver.Conn) error
	Role(ctx context.Context, c driver.Conn) (resolver.Role, error)
}

// Role checks that o finds a server that answers the role query with an
// error or no row of unknown role, with no error, and one that hangs up
// an error.
func Role(t *testing.T, o Opener, serve Serve) {
	for _, tt := range []struct {
		name    string
		a       Answer
		wantErr bool
	}{
		{"error", Error, false},
		{"no row", NoRow, false},
		{"hang up", HangUp, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := serve(t, tt.a, new(atomic.Int64))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := o.Connect(ctx, b)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer c.Close()
			if err := o.Ping(ctx, c); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			r, err := o.Role(ctx, c)
			if r != resolver.RoleUnknown || (err != nil) != tt.wantErr {
				t.Errorf("Role = %v, %v; want unknown, error %v", r, err, tt.wantErr)
			}
		})
	}
}

// Serves checks that a backend whose server answers the role query with
// an error or no row is online, of unknown role, and serves operations of
// every role, health check after health check. open starts a connector
// for b that health-checks every 50 ms.
func Serves(t *testing.T, serve Serve, open func(b resolver.Backend) (*qorb.Connector, error)) {
	for _, tt := range []struct {
		name string
		a    Answer
	}{{"error", Error}, {"no row", NoRow}} {
		t.Run(tt.name, func(t *testing.T) {
			var asked atomic.Int64
			c, err := open(serve(t, tt.a, &asked))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for _, role := range []qorb.Role{qorb.RoleAny, qorb.RolePrimary, qorb.RoleReplica} {
				var one int
				if err := db.QueryRowContext(qorb.WithRole(ctx, role), "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Fatalf("SELECT 1 as %v = %d, %v", role, one, err)
				}
			}
			// Health checks ask the role again and again: the backend
			// stays online and of unknown role, and nothing counts as a
			// failure.
			deadline := time.Now().Add(10 * time.Second)
			for asked.Load() < 4 {
				if time.Now().After(deadline) {
					t.Fatalf("the role was asked %d times in 10s, want health checks to ask it", asked.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
			st := c.Stats()
			if len(st.Backends) != 1 {
				t.Fatalf("%d backends, want 1", len(st.Backends))
			}
			bs := st.Backends[0]
			if bs.Health != pool.HealthOnline || bs.Backend.Role != resolver.RoleUnknown || bs.Failures != 0 {
				t.Errorf("backend %v, role %v, %d failures (last %q); want online, unknown, none",
					bs.Health, bs.Backend.Role, bs.Failures, bs.LastError)
			}
		})
	}
}

// Listen serves each connection to a free port of 127.0.0.1 with handle
// until the test ends, and returns the backend that reaches it.
func Listen(t *testing.T, handle func(net.Conn)) resolver.Backend {
	t.Helper()
	ln := loopback.Listen(t, "127.0.0.1")
	loopback.Serve(t, ln, handle)
	return resolver.Backend{Host: "127.0.0.1", Addr: ln.Addr().String()}
}
