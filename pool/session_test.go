package pool

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// slowSpares is a fakeConnector whose first connection opens at once and
// every later one after half a second: the spares finish connecting after
// the first claim has come and gone (but before the pool would find the
// attempts late, at SuspectAfter, and suspect the backend, which would
// check its idle connection before handing it out).
type slowSpares struct {
	*fakeConnector
}

func (f slowSpares) Connect(ctx context.Context, b resolver.Backend) (*fakeConn, error) {
	if f.connects.Load() > 0 {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.fakeConnector.Connect(ctx, b)
}

// TestSequentialClaimsKeepTheLastConnection shows DESIGN decision 12: with
// one backend, claims one after another get back the connection the last
// claim gave back, however the pool's background work goes: spares that
// finish connecting after it came back, health checks of the idle
// connections, and periodic rebalances, which close surplus idle
// connections.
func TestSequentialClaimsKeepTheLastConnection(t *testing.T) {
	for _, inline := range []bool{true, false} {
		t.Run(recycleMode(inline).String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := slowSpares{newFakeConnector()}
				r, err := resolver.NewStatic(backends(1)...)
				if err != nil {
					t.Fatal(err)
				}
				p, err := New(r, fc, Policy{
					Spares: 4, Recycle: recycleMode(inline),
					HealthInterval: 3 * time.Second, RebalanceInterval: 5 * time.Second,
					MaxIdleTime: 40 * time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Shutdown(context.Background())

				c := claimFrom(t, p, t.Context())
				last := c.Conn()
				release(c)
				for i := range 60 {
					synctest.Wait() // background recycling, if any, is done
					c := claimFrom(t, p, t.Context())
					got := c.Conn()
					release(c)
					if got != last {
						t.Fatalf("claim %d, at %v, got connection %d, want %d, the one the claim before gave back (%d connections open)",
							i, time.Duration(p.clockNow()).Round(time.Second), got.id, last.id, fc.openConns())
					}
					// Spares connect, idle connections are checked, the
					// pool rebalances, and the connection itself, idle
					// less than MaxIdleTime, is kept.
					time.Sleep(time.Second)
				}
				if n := fc.openConns(); n < 3 {
					t.Errorf("%d connections open, want the spares too", n)
				}
				if n := fc.checks.Load(); n == 0 {
					t.Error("no health check ran")
				}
			})
		})
	}
}
