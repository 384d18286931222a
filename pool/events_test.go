package pool

import (
	"bytes"
	"context"
	"errors"
	"runtime/trace"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Observe(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) kinds() map[EventKind]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[EventKind]int{}
	for _, e := range l.events {
		m[e.Kind]++
	}
	return m
}

func TestObserverSeesEveryProbePoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &eventLog{}
		fr := newFakeResolver()
		fc := newFakeConnector()
		p, err := New(fr, fc, Policy{Observer: log, HealthInterval: time.Second, BackoffMax: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		bs := backends(3)
		fc.setMode(bs[2].Addr, backendMode{connectErr: errors.New("refused")})
		fr.set(bs...)
		c, err := p.Claim(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c.Release()
		c, err = p.Claim(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c.Discard(errors.New("reset"))
		fc.setMode(bs[1].Addr, backendMode{checkErr: errors.New("not answering")})
		time.Sleep(2 * time.Second) // health checks, the failing backend goes offline
		synctest.Wait()
		fc.setMode(bs[1].Addr, backendMode{})
		c, err = p.Claim(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c.Conn().broken.Store(true)
		c.Release() // recycle fails
		fr.set(bs[1:]...)
		time.Sleep(time.Second)
		synctest.Wait()
		if _, err := p.ClaimFiltered(t.Context(), func(b resolver.Backend) bool { return b.Addr == bs[2].Addr }); err == nil {
			t.Error("claim for the offline backend succeeded")
		}
		got := log.kinds()
		for k := EventClaim; k <= EventSlotState; k++ {
			if got[k] == 0 {
				t.Errorf("no %v event seen", k)
			}
		}
		for _, e := range log.events {
			if e.String() == "" {
				t.Errorf("event %#v formats as an empty string", e)
			}
		}
	})
}

func TestEventsReachExecutionTrace(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("tracing already on: %v", err)
	}
	r, _ := resolver.NewStatic(backends(1)...)
	p, err := New(r, newFakeConnector(), Policy{})
	if err != nil {
		trace.Stop()
		t.Fatal(err)
	}
	c, err := p.Claim(t.Context())
	if err == nil {
		c.Release()
	}
	p.Close()
	trace.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"qorb", "connect 127.0.0.1:10001", "claim 127.0.0.1:10001"} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("execution trace has no %q", want)
		}
	}
}

func TestClaimReleaseDoesNotAllocate(t *testing.T) {
	for _, inline := range []bool{true, false} {
		r, _ := resolver.NewStatic(backends(3)...)
		p, err := New(r, newFakeConnector(), Policy{Recycle: recycleMode(inline), HealthInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Warm up: every slot connected.
		deadline := time.Now().Add(5 * time.Second)
		for totalIdle(p) < DefaultSpares && time.Now().Before(deadline) {
			c, err := p.Claim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c.Release()
		}
		notOdd := func(b resolver.Backend) bool { return b.Addr != "127.0.0.1:10002" }
		allocs := testing.AllocsPerRun(1000, func() {
			c, err := p.ClaimFiltered(ctx, notOdd)
			if err != nil {
				t.Fatal(err)
			}
			c.Release()
		})
		p.Close()
		// Background recycling hands the slot to the control loop, which
		// starts a goroutine; inline recycling must cost nothing.
		if inline && allocs != 0 {
			t.Errorf("claim+release with inline recycling: %v allocations, want 0", allocs)
		}
	}
}

func totalIdle(p *Pool[*fakeConn]) int {
	n := 0
	for _, b := range p.Stats().Backends {
		n += b.Idle
	}
	return n
}
