package pool

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestOldestClaimExact: in a quiet pool, whose coarse clock has not moved
// for seconds, the age of a claim in Stats is its true age, within 10 ms.
func TestOldestClaimExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newTestPool(t, Policy{Recycle: RecycleInline}, backends(1)...)
		c := claimFrom(t, p, t.Context())
		release(c)
		synctest.Wait()
		time.Sleep(3 * time.Second) // quiet: nothing moves the coarse clock
		c = claimFrom(t, p, t.Context())
		defer release(c)
		time.Sleep(5 * time.Millisecond)
		got := p.Stats().Backends[0].OldestClaim
		if d := got - 5*time.Millisecond; d < -10*time.Millisecond || d > 10*time.Millisecond {
			t.Errorf("OldestClaim = %v for a claim 5ms old, want within 10ms", got)
		}
	})
}

// TestOldestClaimRealClock is TestOldestClaimExact on the real clock: the
// age shown is never more than the time since the claim began, plus 10 ms.
func TestOldestClaimRealClock(t *testing.T) {
	p, _ := newTestPool(t, Policy{Recycle: RecycleInline}, backends(1)...)
	release(claimFrom(t, p, t.Context()))
	before := time.Now()
	c := claimFrom(t, p, t.Context())
	defer release(c)
	got := p.Stats().Backends[0].OldestClaim
	if limit := time.Since(before) + 10*time.Millisecond; got < 0 || got > limit {
		t.Errorf("OldestClaim = %v, want between 0 and %v", got, limit)
	}
}
