package pool

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// recordHandler is a slog.Handler that keeps the records it is given.
type recordHandler struct {
	level slog.Level
	mu    sync.Mutex
	recs  []slog.Record
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *recordHandler) WithGroup(string) slog.Handler                { return h }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

func (h *recordHandler) records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recs)
}

// attrs returns a record's attributes as strings.
func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func TestLogEventsLevelsAndAttributes(t *testing.T) {
	be := resolver.Key{Host: "db1", Addr: "10.0.0.1:5432"}
	refused := errors.New("connection refused")
	tests := []struct {
		e     Event
		level slog.Level
		msg   string
		attrs map[string]string
	}{
		{Event{Kind: EventClaim, Backend: be, Slot: 3, Duration: 2 * time.Millisecond}, slog.LevelDebug, "pool: claim",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "3", "duration": "2ms"}},
		{Event{Kind: EventClaimFailed, Err: refused, Duration: time.Second}, slog.LevelWarn, "pool: claim failed",
			map[string]string{"err": "connection refused", "duration": "1s"}},
		{Event{Kind: EventRelease, Backend: be, Slot: 3, Duration: time.Second}, slog.LevelDebug, "pool: release",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "3", "duration": "1s"}},
		{Event{Kind: EventRelease, Backend: be, Slot: 3, Duration: time.Second, Err: refused}, slog.LevelWarn, "pool: release, connection discarded as broken",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "3", "duration": "1s", "err": "connection refused"}},
		{Event{Kind: EventConnect, Backend: be, Slot: 1, Duration: time.Millisecond}, slog.LevelDebug, "pool: connected",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1", "duration": "1ms"}},
		{Event{Kind: EventConnectFailed, Backend: be, Slot: 1, Err: refused}, slog.LevelWarn, "pool: connection attempt failed",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1", "err": "connection refused"}},
		{Event{Kind: EventHealthCheck, Backend: be, Slot: 1}, slog.LevelDebug, "pool: health check passed",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1"}},
		{Event{Kind: EventHealthCheckFailed, Backend: be, Slot: 1, Err: refused}, slog.LevelWarn, "pool: health check failed, connection closed",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1", "err": "connection refused"}},
		{Event{Kind: EventRecycle, Backend: be, Slot: 1}, slog.LevelDebug, "pool: connection recycled",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1"}},
		{Event{Kind: EventRecycleFailed, Backend: be, Slot: 1, Err: refused}, slog.LevelWarn, "pool: recycle failed, connection closed",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1", "err": "connection refused"}},
		{Event{Kind: EventRebalance, Slots: 12}, slog.LevelDebug, "pool: rebalanced",
			map[string]string{"slots": "12"}},
		{Event{Kind: EventBackendAdded, Backend: be}, slog.LevelInfo, "pool: backend added",
			map[string]string{"backend": "db1@10.0.0.1:5432"}},
		{Event{Kind: EventBackendRemoved, Backend: be}, slog.LevelInfo, "pool: backend removed",
			map[string]string{"backend": "db1@10.0.0.1:5432"}},
		{Event{Kind: EventBackendOnline, Backend: be}, slog.LevelInfo, "pool: backend online",
			map[string]string{"backend": "db1@10.0.0.1:5432"}},
		{Event{Kind: EventBackendOffline, Backend: be, Err: refused}, slog.LevelWarn, "pool: backend offline",
			map[string]string{"backend": "db1@10.0.0.1:5432", "err": "connection refused"}},
		{Event{Kind: EventSlotState, Backend: be, Slot: 1, From: StateIdle, To: StateClaimed}, slog.LevelDebug, "pool: slot state",
			map[string]string{"backend": "db1@10.0.0.1:5432", "slot": "1", "from": "idle", "to": "claimed"}},
		{Event{Kind: 99}, slog.LevelInfo, "pool: event(99)", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.e.Kind.String(), func(t *testing.T) {
			h := &recordHandler{level: slog.LevelDebug}
			LogEvents(slog.New(h)).Observe(tt.e)
			recs := h.records()
			if len(recs) != 1 {
				t.Fatalf("Observe(%v) logged %d records, want 1", tt.e, len(recs))
			}
			r := recs[0]
			if r.Level != tt.level || r.Message != tt.msg {
				t.Errorf("Observe(%v) logged %v %q, want %v %q", tt.e, r.Level, r.Message, tt.level, tt.msg)
			}
			if got := attrs(r); !maps.Equal(got, tt.attrs) {
				t.Errorf("Observe(%v) logged attributes %v, want %v", tt.e, got, tt.attrs)
			}
		})
	}
}

func TestLogEventsBelowLevelDoesNotAllocate(t *testing.T) {
	h := &recordHandler{level: slog.LevelInfo}
	obs := LogEvents(slog.New(h))
	e := Event{Kind: EventClaim, Backend: resolver.Key{Host: "db1", Addr: "10.0.0.1:5432"}, Slot: 1, Duration: time.Millisecond}
	if n := testing.AllocsPerRun(100, func() { obs.Observe(e) }); n != 0 {
		t.Errorf("a debug event with the handler at info allocates %v times, want 0", n)
	}
	if recs := h.records(); len(recs) != 0 {
		t.Errorf("a debug event with the handler at info logged %d records", len(recs))
	}
}

// TestLogEventsFromPool runs a pool with a backend that refuses
// connections and checks what an operator sees at the default level.
func TestLogEventsFromPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		dead := bs[0].Addr
		fc := newFakeConnector()
		fc.setMode(dead, backendMode{connectErr: errors.New("connection refused")})
		h := &recordHandler{level: slog.LevelInfo}
		r, err := resolver.NewStatic(bs...)
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(r, fc, Policy{Observer: LogEvents(slog.New(h)), BackoffMax: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		time.Sleep(time.Second) // virtual time: the dead backend's attempts
		synctest.Wait()
		c := claimFrom(t, p, t.Context())
		release(c)

		count := map[string]int{}
		for _, r := range h.records() {
			if r.Level < slog.LevelInfo {
				t.Errorf("record %q at %v, below the handler's level", r.Message, r.Level)
			}
			a := attrs(r)
			count[r.Message+" "+a["backend"]]++
		}
		for _, want := range []string{
			"pool: backend added " + bs[0].Addr,
			"pool: backend added " + bs[1].Addr,
			"pool: backend online " + bs[1].Addr,
			"pool: backend offline " + dead,
		} {
			if count[want] != 1 {
				t.Errorf("%q logged %d times, want once; all: %v", want, count[want], count)
			}
		}
		if count["pool: connection attempt failed "+dead] < 3 {
			t.Errorf("connection attempts to %s logged %d times, want at least 3 (OfflineAfter)", dead, count["pool: connection attempt failed "+dead])
		}
		if count["pool: claim "+bs[1].Addr] != 0 {
			t.Error("a claim was logged at info")
		}
	})
}

func TestObservers(t *testing.T) {
	if got := Observers(); got != nil {
		t.Errorf("Observers() = %v, want nil", got)
	}
	if got := Observers(nil, nil); got != nil {
		t.Errorf("Observers(nil, nil) = %v, want nil", got)
	}
	var a, b []EventKind
	oa := ObserverFunc(func(e Event) { a = append(a, e.Kind) })
	ob := ObserverFunc(func(e Event) { b = append(b, e.Kind) })
	if got := Observers(nil, oa); got == nil {
		t.Fatal("Observers(nil, oa) = nil")
	}
	all := Observers(oa, nil, ob)
	all.Observe(Event{Kind: EventClaim})
	all.Observe(Event{Kind: EventRelease})
	want := []EventKind{EventClaim, EventRelease}
	if !slices.Equal(a, want) || !slices.Equal(b, want) {
		t.Errorf("observers saw %v and %v, want %v each", a, b, want)
	}
}
