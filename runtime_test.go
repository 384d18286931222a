package qorb

import (
	"context"
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

// TestDrainAndPause shows Connector.Drain, Undrain, Pause and Resume
// through database/sql.
func TestDrainAndPause(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := &fakeOpener{}
		bs := backends(2)
		c := newConnector(t, o, pool.Policy{MaxSlots: 4, Spares: 2}, bs...)
		db := openDB(t, c)
		ctx := t.Context()
		queryBackend(t, ctx, db)
		if err := c.Drain(ctx, bs[0].Addr); err != nil {
			t.Fatalf("Drain: %v", err)
		}
		for range 10 {
			if got := backendOf(queryBackend(t, ctx, db)); got != bs[1].Addr {
				t.Errorf("operation served by %s, the drained backend", got)
			}
		}
		for _, b := range c.Stats().Backends {
			if b.Drained != (b.Backend.Addr == bs[0].Addr) || (b.Drained && b.Slots() != 0) {
				t.Errorf("backend %s: Drained %v with %d slots", b.Backend.Addr, b.Drained, b.Slots())
			}
		}
		if err := c.Drain(ctx, "127.0.0.1:1"); !errors.Is(err, pool.ErrUnknownBackend) {
			t.Errorf("Drain of an unknown backend: %v, want pool.ErrUnknownBackend", err)
		}
		if err := c.Undrain(bs[0].Addr); err != nil {
			t.Fatalf("Undrain: %v", err)
		}

		if err := c.Pause(ctx); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := db.ExecContext(qctx, "UPDATE t")
		cancel()
		if !errors.Is(err, pool.ErrClaimTimeout) {
			t.Errorf("operation on a paused connector past its context: %v, want pool.ErrClaimTimeout", err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := db.ExecContext(ctx, "UPDATE t")
			done <- err
		}()
		time.Sleep(time.Second)
		if !c.Stats().Paused {
			t.Error("Stats().Paused is false while paused")
		}
		c.Resume()
		if err := <-done; err != nil {
			t.Errorf("operation held by Pause: %v after Resume", err)
		}
	})
}
