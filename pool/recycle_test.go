package pool

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// outdated returns the connections Recycle marked that are not replaced.
func outdated(p *Pool[*fakeConn]) int {
	n := 0
	for _, b := range p.Stats().Backends {
		n += b.Outdated
	}
	return n
}

// TestRecycleReplacesGradually checks that Recycle replaces the
// connections open at the call at the connect-rate limit, ConnectBurst at
// once: the idle ones in the background, a claimed one only once it is
// released; the pool never holds more connections than its caps allow.
func TestRecycleReplacesGradually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 4 slots at 0.25 per slot per second: one replacement a second.
		p, fc := newTestPool(t, Policy{MaxSlots: 4, MaxPerBackend: 4, Spares: 4, ConnectRate: 0.25, ConnectBurst: 1,
			MaxLifetime: -1, MaxIdleTime: -1, HealthInterval: -1}, backends(1)...)
		synctest.Wait()
		if n := fc.connects.Load(); n != 4 {
			t.Fatalf("%d connections opened, want 4", n)
		}
		held := claimFrom(t, p, t.Context())
		if n := p.Recycle(); n != 4 {
			t.Errorf("Recycle marked %d connections, want 4", n)
		}
		synctest.Wait()
		if n := fc.closes.Load(); n != 1 {
			t.Errorf("%d connections replaced at once, want ConnectBurst (1)", n)
		}
		if n := outdated(p); n != 3 {
			t.Errorf("Outdated = %d, want 3", n)
		}
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if n := fc.closes.Load(); n != 2 {
			t.Errorf("%d connections replaced after a second, want 2", n)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := fc.closes.Load(); n != 3 || held.Conn().closed.Load() {
			t.Errorf("%d connections replaced, the claimed one closed: %v; want the 3 idle ones and not the claimed one", n, held.Conn().closed.Load())
		}
		if n := outdated(p); n != 1 {
			t.Errorf("Outdated = %d, want 1 (the claimed one)", n)
		}
		old := held.Conn()
		release(held)
		synctest.Wait()
		if !old.closed.Load() || outdated(p) != 0 {
			t.Errorf("after its release: closed %v, Outdated %d; want it replaced", old.closed.Load(), outdated(p))
		}
		if n, peak := fc.openConns(), fc.peakOpen(); n != 4 || peak > 4 {
			t.Errorf("%d connections open (peak %d), want 4 (at most 4)", n, peak)
		}
		// New claims get new connections; nothing more is replaced.
		c := claimFrom(t, p, t.Context())
		release(c)
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := fc.closes.Load(); n != 4 {
			t.Errorf("%d connections replaced in all, want 4", n)
		}
	})
}

// TestRecycleKeepsConnectionsWhileLoginsFail checks that when the new
// logins fail (a rotation to a bad secret), Recycle loses one connection,
// not the pool: the others stay in service, and are replaced once logins
// work again.
func TestRecycleKeepsConnectionsWhileLoginsFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(1)
		p, fc := newTestPool(t, Policy{MaxSlots: 4, MaxPerBackend: 4, Spares: 4, ConnectRate: 0.25, ConnectBurst: 1,
			BackoffMin: time.Second, BackoffMax: 5 * time.Second, MaxLifetime: -1, MaxIdleTime: -1, HealthInterval: -1}, bs...)
		synctest.Wait()
		fc.setMode(bs[0].Addr, backendMode{connectErr: errors.New("password authentication failed")})
		p.Recycle()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := fc.openConns(); n != 3 {
			t.Errorf("%d connections open after 30 s of failing logins, want 3 (one lost to the first replacement)", n)
		}
		for range 10 {
			c, err := p.Claim(t.Context())
			if err != nil {
				t.Fatalf("claim while logins fail: %v", err)
			}
			release(c)
		}
		fc.setMode(bs[0].Addr, backendMode{})
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n, o := fc.openConns(), outdated(p); n != 4 || o != 0 {
			t.Errorf("30 s after logins work again: %d open, %d outdated; want 4 and 0", n, o)
		}
	})
}

// TestRecycleUnpaced checks that without the connect-rate limit Recycle
// replaces every idle connection at once.
func TestRecycleUnpaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{MaxSlots: 3, MaxPerBackend: 3, Spares: 3, ConnectRate: -1,
			MaxLifetime: -1, MaxIdleTime: -1, HealthInterval: -1}, backends(1)...)
		synctest.Wait()
		p.Recycle()
		synctest.Wait()
		if n, open := fc.closes.Load(), fc.openConns(); n != 3 || open != 3 || outdated(p) != 0 {
			t.Errorf("%d replaced, %d open, %d outdated; want 3, 3, 0", n, open, outdated(p))
		}
	})
}
