package pool

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestClosingSettlesToZero puts slots through every way of closing a
// connection (a removed backend, a shrink, a failed health check and
// recycle, a discard, an expired lifetime, Close) and checks the counts
// the MaxSlots cap rests on: once the pool settles, no connection is
// counted as still closing, the slot count matches the slots there are,
// and every open connection belongs to a slot.
func TestClosingSettlesToZero(t *testing.T) {
	for _, inline := range []bool{true, false} {
		t.Run(recycleMode(inline).String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { closingSettlesToZero(t, inline) })
		})
	}
}

func closingSettlesToZero(t *testing.T, inline bool) {
	fr := newFakeResolver()
	fc := newFakeConnector()
	p, err := New(fr, fc, Policy{
		MaxSlots: 6, MaxPerBackend: 4, Spares: 4, Recycle: recycleMode(inline),
		HealthInterval: time.Second, MaxLifetime: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	bs := backends(3)
	fr.set(bs...)
	settled := func(when string) {
		t.Helper()
		time.Sleep(2 * DefaultRebalanceInterval)
		synctest.Wait()
		st := p.Stats()
		if n := p.closingN.Load(); n != 0 {
			t.Errorf("%s: %d connections counted as closing", when, n)
		}
		connected := 0
		for _, b := range st.Backends {
			connected += b.Idle + b.Checking + b.Claimed + b.Recycling
		}
		if n := p.slotCount.Load(); n != int64(totalSlots(st)) {
			t.Errorf("%s: slot count %d, Stats shows %d slots", when, n, totalSlots(st))
		}
		if n := fc.openConns(); n != connected {
			t.Errorf("%s: %d connections open, %d slots hold one", when, n, connected)
		}
	}
	settled("start")

	// Grow past the spares, then give everything back: the periodic
	// rebalance shrinks the pool again.
	var held []Claim[*fakeConn]
	for range 6 {
		held = append(held, claimFrom(t, p, t.Context()))
	}
	for _, c := range held {
		release(c)
	}
	held = held[:0]
	settled("after a shrink")

	// A discard, a failed recycle and a failed health check.
	c := claimFrom(t, p, t.Context())
	c.Conn().claimed.Store(false)
	c.Discard(errors.New("broken"))
	c = claimFrom(t, p, t.Context())
	c.Conn().broken.Store(true)
	release(c)
	fc.setMode(bs[1].Addr, backendMode{checkErr: errors.New("not answering")})
	time.Sleep(2 * time.Second)
	fc.setMode(bs[1].Addr, backendMode{})
	settled("after failures")

	// A backend goes while one of its connections is claimed, and
	// lifetimes run out.
	for {
		c := claimFrom(t, p, t.Context())
		if c.Backend().Addr == bs[0].Addr {
			held = append(held, c)
			break
		}
		release(c)
	}
	fr.set(bs[1:]...)
	settled("after a removal")
	release(held[0])
	time.Sleep(30 * time.Second)
	settled("after lifetimes ran out")

	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := p.closingN.Load(); n != 0 {
		t.Errorf("after Close: %d connections counted as closing", n)
	}
	if n := fc.openConns(); n != 0 {
		t.Errorf("after Close: %d connections open", n)
	}
	fc.check(t)
}
