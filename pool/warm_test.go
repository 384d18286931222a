package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestConnectBucket(t *testing.T) {
	var b connectBucket
	sec := int64(time.Second)
	if ok, _ := b.take(sec, 0.5, 2, 1); !ok {
		t.Fatal("first take from a full bucket of 2 failed")
	}
	if ok, _ := b.take(sec, 0.5, 2, 1); !ok {
		t.Fatal("second take from a full bucket of 2 failed")
	}
	ok, next := b.take(sec, 0.5, 2, 1)
	if ok {
		t.Fatal("third take at once succeeded, want the bucket empty")
	}
	if want := 3 * sec; next < want || next > want+int64(time.Millisecond) {
		t.Errorf("next token at %v, want %v (one token per 2 s)", time.Duration(next), time.Duration(want))
	}
	if ok, _ := b.take(next, 0.5, 2, 1); !ok {
		t.Error("take when the next token is due failed")
	}
	// Tokens do not pile up beyond the burst.
	if ok, _ := b.take(100*sec, 0.5, 2, 1); !ok {
		t.Fatal("take after a long wait failed")
	}
	b.take(100*sec, 0.5, 2, 1)
	if ok, _ := b.take(100*sec, 0.5, 2, 1); ok {
		t.Error("a long wait filled the bucket beyond its burst")
	}
}

// Turns taken at a random cost about 1 come between half the period and
// one and a half apart, the rate kept on average.
func TestConnectBucketJitteredTurns(t *testing.T) {
	var b connectBucket
	const rate = 0.2 // one per 5 s
	period := int64(float64(time.Second) / rate)
	now := int64(time.Second)
	b.take(now, rate, 1, 1)
	var gaps []int64
	for cost := 0.5; cost <= 1.5; cost += 0.25 {
		ok, next := b.take(now, rate, 1, cost)
		if ok {
			t.Fatal("take at once after a turn succeeded")
		}
		if ok, _ := b.take(next, rate, 1, cost); !ok {
			t.Fatalf("take when due (%v) failed", time.Duration(next))
		}
		gaps = append(gaps, next-now)
		now = next
	}
	// The gap after a turn is that turn's cost times the period (the
	// first turn cost 1).
	want := []float64{1, 0.5, 0.75, 1, 1.25}
	for i, g := range gaps {
		if w := int64(want[i] * float64(period)); g < w || g > w+int64(time.Millisecond) {
			t.Errorf("gap %d: %v, want %v", i, time.Duration(g), time.Duration(w))
		}
	}
}

// attemptLog records when the pool tried to connect to each backend.
type attemptLog struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (l *attemptLog) Observe(e Event) {
	if e.Kind != EventConnect && e.Kind != EventConnectFailed {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[string][]time.Time{}
	}
	l.at[e.Backend.Addr] = append(l.at[e.Backend.Addr], time.Now().Add(-e.Duration))
}

// between counts the attempts on addr from from (inclusive) to to.
func (l *attemptLog) between(addr string, from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.at[addr] {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// A backend that dies under a pool holding many connections to it sees
// ConnectBurst attempts at once, not one per connection, and then at
// most ConnectRate of its share per second (but at least one per
// ProbeBackoffMax, which probes it once it is offline). Once it is back
// it is found within ProbeBackoffMax and refilled at that pace too.
func TestConnectRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		b := bs[0].Addr
		log := &attemptLog{}
		pol := Policy{MaxSlots: 16, MaxPerBackend: 16, Spares: 16, ConnectRate: 0.05, ConnectBurst: 1, Observer: log}
		p, fc := newTestPool(t, pol, bs...)
		synctest.Wait()
		share := backendStats(t, p, b).Slots()
		if share != 8 {
			t.Fatalf("backend %s has %d slots, want 8", b, share)
		}

		// b dies: its connections fail their checks and break in use.
		time.Sleep(time.Second) // after the first connections
		died := time.Now()
		fc.setMode(b, backendMode{connectErr: errors.New("refused"), checkErr: errors.New("dead")})
		for range 8 {
			useOnce(t, p, b)
		}
		synctest.Wait()
		if n := log.between(b, died, died.Add(time.Second)); n > pol.ConnectBurst {
			t.Errorf("%d connection attempts on %s in the first second down, want at most ConnectBurst = %d", n, b, pol.ConnectBurst)
		}
		// Then one per 1/(0.05*8) = 2.5 s, however many slots wait.
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if n := log.between(b, died.Add(time.Second), died.Add(61*time.Second)); n < 10 || n > 25 {
			t.Errorf("%d connection attempts on %s in the next 60 s, want about 60/2.5 = 24 or, once it is offline and probed by one slot, fewer, but some", n, b)
		}
		if h := backendStats(t, p, b).Health; h != HealthOffline {
			t.Fatalf("%s is %v after a minute down, want offline", b, h)
		}

		// b comes back: found within ProbeBackoffMax (5 s) and slow start.
		back := time.Now()
		fc.setMode(b, backendMode{})
		for backendStats(t, p, b).Health != HealthOnline {
			if time.Since(back) > DefaultProbeBackoffMax+time.Second {
				t.Fatalf("%s not online %v after it came back", b, time.Since(back))
			}
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		online := time.Now()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		// Refilled at 0.05 * 8 = 0.4 attempts per second at most, plus
		// the burst.
		if n := log.between(b, online, online.Add(10*time.Second)); n > 5 {
			t.Errorf("%d connection attempts on %s in its first 10 s back, want at most 0.4/s + 1", n, b)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := backendStats(t, p, b).Slots(); got != share {
			t.Errorf("%s has %d slots 40 s after it came back, want its share %d again", b, got, share)
		}
	})
}

// A backend back from offline takes a growing share of claims over
// SlowStart, from a tenth of its weight, and its full share after.
func TestSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		b := bs[1].Addr
		p, fc := newTestPool(t, Policy{Recycle: RecycleInline, BackoffMax: time.Second, SlowStart: 20 * time.Second, ConnectRate: -1}, bs...)
		synctest.Wait()
		fc.setMode(b, backendMode{connectErr: errors.New("refused"), checkErr: errors.New("dead")})
		for backendStats(t, p, b).Health != HealthOffline {
			useOnce(t, p, b)
			time.Sleep(50 * time.Millisecond)
		}
		fc.setMode(b, backendMode{})
		for backendStats(t, p, b).Health != HealthOnline {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		if w := backendStats(t, p, b).Warmth; w < warmFloor || w > 0.15 {
			t.Errorf("Warmth just back = %.2f, want about %.1f", w, warmFloor)
		}
		first := shareOf(t, p, b, 200) // weight about 0.1: 0.1/1.1 of the claims
		time.Sleep(9 * time.Second)
		middle := shareOf(t, p, b, 200) // about 0.5: a third
		time.Sleep(15 * time.Second)
		last := shareOf(t, p, b, 200) // full: a half
		if w := backendStats(t, p, b).Warmth; w != 1 {
			t.Errorf("Warmth after the slow start = %.2f, want 1", w)
		}
		if first > 0.15 {
			t.Errorf("share in the first second back = %.2f, want about 0.09", first)
		}
		if middle < 0.25 || middle > 0.42 {
			t.Errorf("share 10 s on = %.2f, want about 0.33", middle)
		}
		if last < 0.45 || last > 0.55 {
			t.Errorf("share after the slow start = %.2f, want 0.5", last)
		}
	})
}

// useOnce makes one claim and gives it back, discarding it as broken if
// it went to the backend at dead.
func useOnce(t *testing.T, p *Pool[*fakeConn], dead string) {
	t.Helper()
	c := claimFrom(t, p, t.Context())
	if c.Backend().Addr == dead {
		c.Conn().claimed.Store(false)
		c.Discard(errors.New("connection reset"))
		return
	}
	release(c)
}

// shareOf returns the share of n claims, one every 5 ms, that went to the
// backend at addr.
func shareOf(t *testing.T, p *Pool[*fakeConn], addr string, n int) float64 {
	t.Helper()
	got := 0
	for range n {
		c := claimFrom(t, p, t.Context())
		if c.Backend().Addr == addr {
			got++
		}
		release(c)
		time.Sleep(5 * time.Millisecond)
		synctest.Wait()
	}
	return float64(got) / float64(n)
}

// A steady load whose concurrency wanders opens no connections once the
// pool has grown to it: the pool keeps the slots claimed lately.
func TestSteadyLoadDoesNotChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, fc := newTestPool(t, Policy{Spares: 2}, backends(3)...)
		synctest.Wait()
		// Between 1 and 4 claims held at once, changing every 100 ms.
		load := func(d time.Duration) {
			end := time.Now().Add(d)
			for i := 0; time.Now().Before(end); i++ {
				n := 1 + (i*7)%4
				var held []Claim[*fakeConn]
				for range n {
					held = append(held, claimFrom(t, p, t.Context()))
				}
				time.Sleep(100 * time.Millisecond)
				for _, c := range held {
					release(c)
				}
				synctest.Wait()
			}
		}
		load(time.Minute)
		before := fc.connects.Load()
		load(5 * time.Minute)
		if n := fc.connects.Load() - before; n != 0 {
			t.Errorf("%d connections opened in 5 minutes of steady load, want none", n)
		}
	})
}

// A backend added to a running pool starts slow too, and is not starved:
// it takes a small share at once and its full share after SlowStart.
func TestSlowStartAddedBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeResolver()
		p, err := New(fr, newFakeConnector(), Policy{Recycle: RecycleInline, SlowStart: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		bs := backends(3)
		fr.set(bs[:2]...)
		synctest.Wait()
		for range 3000 { // the first two serve many claims
			release(claimFrom(t, p, t.Context()))
		}
		// Within startGrace of its first set, a pool takes new backends
		// as part of its start, without slow start.
		time.Sleep(startGrace + time.Second)
		fr.set(bs...)
		time.Sleep(time.Second)
		synctest.Wait()
		added := bs[2].Addr
		if w := backendStats(t, p, added).Warmth; w > 0.2 {
			t.Errorf("added backend's warmth = %.2f, want slow start to have begun", w)
		}
		first := shareOf(t, p, added, 300) // weight about 0.1: 0.1/2.1
		time.Sleep(25 * time.Second)
		last := shareOf(t, p, added, 300) // a third
		if first == 0 || first > 0.12 {
			t.Errorf("added backend's share in its first second = %.2f, want about 0.05", first)
		}
		if last < 0.3 || last > 0.37 {
			t.Errorf("added backend's share after the slow start = %.2f, want a third", last)
		}
	})
}

// Under concurrent load, with the picker rebuilt at every step of the
// slow start, a returning backend's share follows its weight: the many
// small steps must not add up to a debt (they did when served counts
// were scaled in integers).
func TestSlowStartUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(3)
		b := bs[1].Addr
		p, fc := newTestPool(t, Policy{}, bs...)
		synctest.Wait()
		var onB, all atomic.Int64
		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					c, err := p.Claim(ctx)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					if c.Backend().Addr == b {
						onB.Add(1)
					}
					all.Add(1)
					time.Sleep(time.Duration(50+(i*37+w*11)%100) * time.Millisecond)
					c.Release()
					time.Sleep(time.Duration(100+(i*53+w*7)%400) * time.Millisecond)
				}
			})
		}
		time.Sleep(10 * time.Second)
		fc.setMode(b, backendMode{connectErr: errors.New("refused"), checkErr: errors.New("dead")})
		time.Sleep(40 * time.Second) // its idle connections fail their checks; offline
		if h := backendStats(t, p, b).Health; h != HealthOffline {
			t.Fatalf("%s is %v, want offline", b, h)
		}
		fc.setMode(b, backendMode{})
		for backendStats(t, p, b).Health != HealthOnline {
			time.Sleep(100 * time.Millisecond)
		}
		onB.Store(0)
		all.Store(0)
		time.Sleep(DefaultSlowStart)
		// Its weight grows from 0.1 to 1 against two of 1: about a fifth
		// of the claims over the slow start, a third once it is over.
		if share := float64(onB.Load()) / float64(all.Load()); share > 0.28 {
			t.Errorf("returning backend took %.2f of the claims during its slow start, want about 0.2", share)
		}
		stop()
		wg.Wait()
	})
}
