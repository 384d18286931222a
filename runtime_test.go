package qorb

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// TestSetPolicyDerivesAsNewConnector shows that Connector.SetPolicy takes
// a policy as NewConnector does: the fields it derives are derived again
// when left zero, and what NewConnector refuses is refused.
func TestSetPolicyDerivesAsNewConnector(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := &fakeOpener{replicates: true}
		c := newConnectorWith(t, o, Settings{Policy: pool.Policy{MaxSlots: 4}, MaxLag: time.Second}, backends(2)...)
		if err := c.SetPolicy(pool.Policy{MaxSlots: 8, ClaimTimeout: time.Second}); err != nil {
			t.Fatalf("SetPolicy: %v", err)
		}
		got := c.Policy()
		if got.MaxSlots != 8 || got.ClaimTimeout != time.Second {
			t.Errorf("after SetPolicy: MaxSlots %d, ClaimTimeout %v; want 8, 1s", got.MaxSlots, got.ClaimTimeout)
		}
		if got.HealthInterval != 500*time.Millisecond || got.Recycle != pool.RecycleInline {
			t.Errorf("after SetPolicy: HealthInterval %v, Recycle %v; want MaxLag/2 = 500ms and inline, as NewConnector derives",
				got.HealthInterval, got.Recycle)
		}
		if st := c.Stats(); st.MaxSlots != 8 {
			t.Errorf("Stats().MaxSlots = %d, want 8", st.MaxSlots)
		}
		for _, bad := range []pool.Policy{{MaxSlots: -1}, {BackoffMin: time.Second, BackoffMax: time.Millisecond}} {
			err := c.SetPolicy(bad)
			r, _ := resolver.NewStatic(backends(1)...)
			_, newErr := NewConnector(Config{Opener: o.asOpener(), Resolver: r, Settings: Settings{Policy: bad}})
			if !errors.Is(err, pool.ErrBadPolicy) || newErr == nil || err.Error() != newErr.Error() {
				t.Errorf("SetPolicy(%+v) = %v; NewConnector says %v", bad, err, newErr)
			}
		}
		if got := c.Policy().MaxSlots; got != 8 {
			t.Errorf("MaxSlots = %d after refused changes, want 8", got)
		}
	})
}
