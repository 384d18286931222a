package pool

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestReturningBackendIsOwedNothing takes a backend offline while the
// others serve thousands of claims, brings it back, and checks that it
// rejoins the round robin at its peers' level instead of taking every
// claim until its served count catches up.
func TestReturningBackendIsOwedNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		b := bs[1].Addr
		// Without slow start (see TestSlowStart), it takes its full share
		// at once.
		p, fc := newTestPool(t, Policy{Recycle: RecycleInline, BackoffMax: time.Second, SlowStart: -1}, bs...)
		synctest.Wait()
		health := func() Health {
			for _, bst := range p.Stats().Backends {
				if bst.Backend.Addr == b {
					return bst.Health
				}
			}
			t.Fatalf("backend %s is not in the stats", b)
			return HealthUnknown
		}
		for range 300 {
			release(claimFrom(t, p, t.Context()))
		}

		// b dies; claims find its connections broken until it is offline.
		fc.setMode(b, backendMode{connectErr: errors.New("refused"), checkErr: errors.New("dead")})
		for i := 0; health() != HealthOffline; i++ {
			if i == 1000 {
				t.Fatalf("backend %s is %v after %d claims, want offline", b, health(), i)
			}
			useOnce(t, p, b)
			time.Sleep(50 * time.Millisecond) // let b's reconnections fail
		}
		for range 3000 {
			release(claimFrom(t, p, t.Context()))
		}

		// b comes back.
		fc.setMode(b, backendMode{})
		for i := 0; health() != HealthOnline; i++ {
			if i == 100 {
				t.Fatalf("backend %s is %v %v after it came back, want online", b, health(), time.Duration(i)*100*time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		if share := shareOf(t, p, b, 300); share < 0.3 || share > 0.37 {
			t.Errorf("backend %s served %.2f of the 300 claims after it came back, want a third ±10 %%", b, share)
		}
	})
}

// TestPoolsBreakTiesDifferently checks that many pools over the same
// backends do not all favour the same one: the slots left over once each
// backend has its even share, and the first claim, fall on every backend
// about as often.
func TestPoolsBreakTiesDifferently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const pools = 90
		bs := backends(3)
		slots := map[string]int{}
		first := map[string]int{}
		for range pools {
			// 7 spares over 3 backends: 3, 2 and 2 slots.
			p, _ := newTestPool(t, Policy{Spares: 7, Recycle: RecycleInline}, bs...)
			synctest.Wait()
			c := claimFrom(t, p, t.Context())
			first[c.Backend().Addr]++
			release(c)
			for _, b := range p.Stats().Backends {
				slots[b.Backend.Addr] += b.Slots()
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// Each backend gets the extra slot, and the first claim, in a
		// third of the pools: 30 ± 4.5 (one standard deviation). The
		// bounds are 4 standard deviations away.
		for _, b := range bs {
			if extra := slots[b.Addr] - 2*pools; extra < 12 || extra > 48 {
				t.Errorf("backend %s got the extra slot in %d of %d pools, want about a third", b.Addr, extra, pools)
			}
			if n := first[b.Addr]; n < 12 || n > 48 {
				t.Errorf("backend %s took the first claim in %d of %d pools, want about a third", b.Addr, n, pools)
			}
		}
	})
}

// TestLargeTierSpread checks that in a tier too large to scan, where the
// picker compares two backends drawn at random, sequential claims still
// spread about evenly, whether every backend has slots or only a few do.
func TestLargeTierSpread(t *testing.T) {
	for _, tt := range []struct{ backends, slots int }{{40, 40}, {1000, 16}} {
		t.Run(fmt.Sprintf("backends=%d/slots=%d", tt.backends, tt.slots), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, _ := newTestPool(t, Policy{MaxSlots: tt.slots, Spares: tt.slots, Recycle: RecycleInline}, backends(tt.backends)...)
				synctest.Wait()
				counts := map[string]int{}
				claims := 100 * tt.slots
				for range claims {
					c := claimFrom(t, p, t.Context())
					counts[c.Backend().Addr]++
					release(c)
				}
				if len(counts) != tt.slots {
					t.Errorf("claims went to %d backends, want the %d with a slot", len(counts), tt.slots)
				}
				// Comparing two at random keeps each within a few claims
				// of even (drawing one at random would not: ±10 is one
				// standard deviation).
				for addr, n := range counts {
					if n < 92 || n > 108 {
						t.Errorf("backend %s served %d of %d claims, want 100±8", addr, n, claims)
					}
				}
				for _, b := range p.Stats().Backends {
					if b.Waits != 0 {
						t.Errorf("backend %s: %d claims waited, want none", b.Backend.Addr, b.Waits)
					}
				}
			})
		})
	}
}

// TestHealthChecksDoNotSkewTheRoundRobin makes every health check take
// 20ms, so that a backend's idle connection is often out being checked
// when its turn comes and the claim goes elsewhere, and checks that the
// round robin gives the backend the turns it missed once the connection is
// back: the counts drift apart while checks run, and once the checks are
// quick a few hundred more claims bring them level again.
func TestHealthChecksDoNotSkewTheRoundRobin(t *testing.T) {
	for _, spares := range []int{1, 3} {
		t.Run(fmt.Sprintf("spares=%d", spares), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bs := backends(3)
				p, fc := newTestPool(t, Policy{Spares: spares, HealthInterval: 50 * time.Millisecond, SuspectAfter: -1}, bs...)
				setDelay := func(d time.Duration) {
					for _, b := range bs {
						fc.setMode(b.Addr, backendMode{delay: d})
					}
				}
				setDelay(20 * time.Millisecond)
				time.Sleep(time.Second) // let the first connections open
				counts := map[string]int{}
				spread := func() int {
					lo, hi := counts[bs[0].Addr], counts[bs[0].Addr]
					for _, b := range bs[1:] {
						lo, hi = min(lo, counts[b.Addr]), max(hi, counts[b.Addr])
					}
					return hi - lo
				}
				claim := func() {
					c := claimFrom(t, p, t.Context())
					counts[c.Backend().Addr]++
					release(c)
				}
				drift := 0
				for range 3000 {
					claim()
					time.Sleep(time.Millisecond)
					drift = max(drift, spread())
				}
				if drift < 3 {
					t.Fatalf("the counts drifted at most %d apart: the health checks never kept a backend from its turn, so the test proves nothing", drift)
				}

				// The checks in flight end, the next ones take no time,
				// and no time passes while the last claims run.
				setDelay(0)
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
				for range 300 {
					claim()
					synctest.Wait()
				}
				if s := spread(); s > 1 {
					t.Errorf("backends served %v of 3300 claims (%d apart at most while checks ran), want each within 1 of the others", counts, drift)
				}
			})
		})
	}
}

// A backend under suspicion for a while (its connections being checked,
// claims passing it by) rejoins the round robin level with the others: it
// is not owed the claims it missed, which it would otherwise take from
// them all at once.
func TestSuspectRejoinsLevel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		odd := bs[0].Addr
		p, fc := newTestPool(t, Policy{Recycle: RecycleInline, HealthInterval: -1, ConnectRate: -1, SlowStart: -1, OfflineAfter: 1000}, bs...)
		synctest.Wait()
		// Its checks hang for 3 s: suspected, its idle connections are
		// checked and out of reach meanwhile.
		fc.setMode(odd, backendMode{delay: 3 * time.Second})
		c := claimFrom(t, p, t.Context())
		for c.Backend().Addr != odd {
			release(c)
			c = claimFrom(t, p, t.Context())
		}
		c.Conn().claimed.Store(false)
		c.Discard(errors.New("connection reset"))
		missed := 0
		for range 300 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == odd {
				missed--
			}
			missed++
			release(c)
			time.Sleep(10 * time.Millisecond)
		}
		fc.setMode(odd, backendMode{})
		time.Sleep(time.Second)
		synctest.Wait()
		if b := backendStats(t, p, odd); b.Suspect {
			t.Fatalf("%s still suspected after its checks answered", odd)
		}
		n := 0
		for range 300 {
			c := claimFrom(t, p, t.Context())
			if c.Backend().Addr == odd {
				n++
			}
			release(c)
		}
		t.Logf("missed %d, then %d of 300", missed, n)
		if n < 90 || n > 110 {
			t.Errorf("%s served %d of 300 claims after it was suspected (and missed %d), want 100±10", odd, n, missed)
		}
	})
}
