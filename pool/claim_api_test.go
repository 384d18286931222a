package pool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/qorb-go/qorb/resolver"
)

// TryClaimFiltered tells observers of its claims as ClaimFiltered does,
// so every release an observer sees follows a claim.
func TestTryClaimFilteredIsObserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &eventLog{}
		r, _ := resolver.NewStatic(backends(2)...)
		p, err := New(r, newFakeConnector(), Policy{Observer: log})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		c, ok := p.TryClaimFiltered(t.Context(), nil)
		if !ok {
			t.Fatal("TryClaimFiltered found no idle connection in a warm pool")
		}
		c.Release()
		synctest.Wait()
		k := log.kinds()
		if k[EventClaim] != 1 || k[EventRelease] != 1 {
			t.Errorf("observer saw %d claims and %d releases, want 1 and 1", k[EventClaim], k[EventRelease])
		}
	})
}

// TryClaimFiltered runs the acquire hook and takes another connection
// when it fails, as ClaimFiltered does. (A failed hook suspects its
// backend, whose idle connections are then checked first: the next try
// finds the other backend's.)
func TestTryClaimFilteredRunsAcquireHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ac := &acquireConnector{fakeConnector: newFakeConnector(), fails: 1}
		r, _ := resolver.NewStatic(backends(2)...)
		p, err := New[*fakeConn](r, ac, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		c, ok := p.TryClaimFiltered(t.Context(), nil)
		if !ok {
			t.Fatal("TryClaimFiltered with a hook that fails once found nothing")
		}
		if ac.fails != 0 {
			t.Errorf("the hook ran %d times too few", ac.fails)
		}
		c.Release()
		ac.fails = maxAcquireAttempts
		if _, ok := p.TryClaimFiltered(t.Context(), nil); ok {
			t.Error("TryClaimFiltered succeeded although the hook failed on every connection")
		}
	})
}

// The acquire hook gets the claim's own context: no deadline of the
// pool's, and so no allocation per claim for one.
func TestAcquireHookGetsClaimContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		var sawDeadline, sawValue atomic.Bool
		hc := &hookConnector{fakeConnector: newFakeConnector(), hook: func(ctx context.Context) error {
			_, dl := ctx.Deadline()
			sawDeadline.Store(dl)
			sawValue.Store(ctx.Value(key{}) == "claim")
			return nil
		}}
		r, _ := resolver.NewStatic(backends(1)...)
		p, err := New[*fakeConn](r, hc, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, err := p.Claim(context.WithValue(t.Context(), key{}, "claim"))
		if err != nil {
			t.Fatal(err)
		}
		c.Release()
		if sawDeadline.Load() || !sawValue.Load() {
			t.Errorf("hook context: deadline %v, claim's value %v; want no deadline and the claim's context", sawDeadline.Load(), sawValue.Load())
		}
	})
}

type hookConnector struct {
	*fakeConnector
	hook func(context.Context) error
}

func (h *hookConnector) OnAcquire(ctx context.Context, c *fakeConn) error { return h.hook(ctx) }

// A queued claim whose filter starts to accept a backend for a reason
// the pool cannot see gets a connection once the pool is told.
func TestFiltersChangedWakesQueuedClaims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := resolver.NewStatic(backends(1)...)
		p, err := New(r, newFakeConnector(), Policy{HealthInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		var open atomic.Bool
		f := func(resolver.Backend) bool { return open.Load() }
		got := make(chan error, 1)
		go func() {
			c, err := p.ClaimFiltered(t.Context(), f)
			if err == nil {
				c.Release()
			}
			got <- err
		}()
		synctest.Wait()
		open.Store(true)
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("claim finished (%v) before the pool was told its filter changed", err)
		default:
		}
		p.FiltersChanged()
		if err := <-got; err != nil {
			t.Errorf("claim after FiltersChanged: %v", err)
		}
		p.Close()
		p.FiltersChanged() // harmless after Close
	})
}

func TestBadRecycleMode(t *testing.T) {
	r, _ := resolver.NewStatic(backends(1)...)
	if _, err := New(r, newFakeConnector(), Policy{Recycle: RecycleInline + 1}); !errors.Is(err, ErrBadPolicy) {
		t.Errorf("New with an unknown recycle mode: %v, want ErrBadPolicy", err)
	}
	if got := RecycleInline.String(); got != "inline" {
		t.Errorf("RecycleInline.String() = %q", got)
	}
}
