package mysqldialect

import (
	"os"
	"testing"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/resolver"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestClusterRole: Role tells a read-only replica from a primary, and sees
// a promotion on a connection opened before it.
func TestClusterRole(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("starts a MariaDB primary and replica (needs root, not -short)")
	}
	c := dbtest.StartMariaDBCluster(t, 1)
	o, err := NewOpener(qorb.DriverConfig{User: dbtest.User, Password: dbtest.Password, Database: dbtest.Database})
	if err != nil {
		t.Fatal(err)
	}
	primary := connect(t, o, resolver.Backend{Host: "127.0.0.1", Addr: c.Primary.Addr()})
	replica := connect(t, o, resolver.Backend{Host: "127.0.0.1", Addr: c.Replicas[0].Addr()})
	ctx := t.Context()
	if r, err := o.Role(ctx, primary); err != nil || r != resolver.RolePrimary {
		t.Errorf("Role(primary) = %v, %v", r, err)
	}
	if r, err := o.Role(ctx, replica); err != nil || r != resolver.RoleReplica {
		t.Errorf("Role(replica) = %v, %v", r, err)
	}
	c.Failover(t, c.Replicas[0])
	if r, err := o.Role(ctx, replica); err != nil || r != resolver.RolePrimary {
		t.Errorf("Role(promoted replica) = %v, %v", r, err)
	}
}
