package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// roleConnector is a fakeConnector whose servers report a role, settable
// per backend, and can fail the role query.
type roleConnector struct {
	*fakeConnector
	mu    sync.Mutex
	roles map[string]resolver.Role
	fail  map[string]bool
	asked int
}

func newRoleConnector() *roleConnector {
	return &roleConnector{fakeConnector: newFakeConnector(), roles: map[string]resolver.Role{}, fail: map[string]bool{}}
}

func (r *roleConnector) setRole(addr string, role resolver.Role) {
	r.mu.Lock()
	r.roles[addr] = role
	r.mu.Unlock()
}

func (r *roleConnector) askedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked
}

func (r *roleConnector) Role(ctx context.Context, c *fakeConn) (resolver.Role, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked++
	if r.fail[c.backend] {
		return 0, errors.New("role query failed")
	}
	return r.roles[c.backend], nil
}

var primaries = func(b resolver.Backend) bool { return b.Role == resolver.RolePrimary }

func TestRolesLearnedAndFollowed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		rc := newRoleConnector()
		rc.setRole(bs[0].Addr, resolver.RolePrimary)
		rc.setRole(bs[1].Addr, resolver.RoleReplica)
		rc.setRole(bs[2].Addr, resolver.RoleReplica)
		r, _ := resolver.NewStatic(bs...)
		p, err := New[*fakeConn](r, rc, Policy{HealthInterval: time.Second, Recycle: RecycleInline})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		for _, b := range p.Stats().Backends {
			if want := map[string]resolver.Role{bs[0].Addr: resolver.RolePrimary, bs[1].Addr: resolver.RoleReplica, bs[2].Addr: resolver.RoleReplica}[b.Backend.Addr]; b.Backend.Role != want {
				t.Errorf("backend %s has role %v after connecting, want %v", b.Backend.Addr, b.Backend.Role, want)
			}
		}
		for range 10 {
			c, err := p.ClaimFiltered(t.Context(), primaries)
			if err != nil {
				t.Fatal(err)
			}
			if c.Backend().Addr != bs[0].Addr {
				t.Fatalf("primary claim went to %s", c.Backend().Addr)
			}
			c.Release()
		}
		// Failover: the primary becomes a replica and bs[1] the primary;
		// the next health checks see it.
		rc.setRole(bs[0].Addr, resolver.RoleReplica)
		rc.setRole(bs[1].Addr, resolver.RolePrimary)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		c, err := p.ClaimFiltered(t.Context(), primaries)
		if err != nil {
			t.Fatal(err)
		}
		if c.Backend().Addr != bs[1].Addr {
			t.Errorf("after failover a primary claim went to %s, want %s", c.Backend().Addr, bs[1].Addr)
		}
		c.Release()
	})
}

func TestFilteredClaimWaitsForItsRole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		rc := newRoleConnector()
		rc.setRole(bs[0].Addr, resolver.RoleReplica)
		rc.setRole(bs[1].Addr, resolver.RoleReplica)
		r, _ := resolver.NewStatic(bs...)
		p, err := New[*fakeConn](r, rc, Policy{HealthInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		if p.Usable(primaries) {
			t.Error("Usable(primaries) with no primary")
		}
		if _, ok := p.TryClaimFiltered(t.Context(), primaries); ok {
			t.Error("TryClaimFiltered found a primary where there is none")
		}
		got := make(chan Claim[*fakeConn])
		go func() {
			c, err := p.ClaimFiltered(t.Context(), primaries)
			if err != nil {
				t.Error(err)
			}
			got <- c
		}()
		synctest.Wait()
		// A replica is promoted: the waiting claim gets it once the pool
		// learns so, at a re-check.
		rc.setRole(bs[1].Addr, resolver.RolePrimary)
		p.Recheck(bs[1].Key())
		c := <-got
		if c.Backend().Addr != bs[1].Addr || c.Backend().Role != resolver.RolePrimary {
			t.Errorf("claim got %v, want the promoted %s", c.Backend(), bs[1].Addr)
		}
		c.Release()
		synctest.Wait() // the re-checks started above are done
		// SetRole, as after a read-only error, takes effect at once.
		rc.setRole(bs[1].Addr, resolver.RoleReplica)
		p.SetRole(bs[1].Key(), resolver.RoleReplica)
		synctest.Wait()
		if p.Usable(primaries) {
			t.Error("Usable(primaries) after SetRole made the only primary a replica")
		}
	})
}

func TestRoleQueryFailureFailsTheConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(1)
		rc := newRoleConnector()
		rc.fail[bs[0].Addr] = true
		r, _ := resolver.NewStatic(bs...)
		p, err := New[*fakeConn](r, rc, Policy{BackoffMax: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		time.Sleep(time.Second)
		synctest.Wait()
		b := p.Stats().Backends[0]
		if b.Health != HealthOffline || b.LastError == "" {
			t.Errorf("backend whose role query fails is %v (last error %q), want offline", b.Health, b.LastError)
		}
		if n := rc.openConns(); n != 0 {
			t.Errorf("%d connections left open after failed role queries", n)
		}
	})
}
