package srv_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

// records is a slog.Handler that keeps what it is given, from a level on.
type records struct {
	min  slog.Level
	mu   sync.Mutex
	list []slog.Record
}

func (h *records) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.list = append(h.list, r)
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

func TestLogEvents(t *testing.T) {
	rec := srv.Record{Backend: resolver.Backend{Host: "pg1.db.test", Addr: "127.0.0.1:5432", Priority: 1, Weight: 5}, TTL: time.Second}
	fail := errors.New("boom")
	tests := []struct {
		ev    srv.Event
		level slog.Level
		msg   string
		attrs map[string]string
	}{
		{srv.Event{Kind: srv.EventUpdate, Name: "n.", Server: "127.0.0.1:53", Records: []srv.Record{rec}, Next: time.Second},
			slog.LevelInfo, "resolver: backend set changed",
			map[string]string{"name": "n.", "server": "127.0.0.1:53", "count": "1", "backends": "[pg1.db.test@127.0.0.1:5432 prio=1 weight=5]", "next": "1s"}},
		{srv.Event{Kind: srv.EventUnchanged, Name: "n.", Records: []srv.Record{rec}},
			slog.LevelDebug, "resolver: unchanged", map[string]string{"name": "n.", "count": "1"}},
		{srv.Event{Kind: srv.EventEmptyPending, Name: "n.", Err: fail},
			slog.LevelWarn, "resolver: no backends in answer, keeping the last set until confirmed", map[string]string{"err": "boom"}},
		{srv.Event{Kind: srv.EventLookupFailed, Name: "n.", Err: fail, Next: time.Minute},
			slog.LevelWarn, "resolver: lookup failed, keeping the last set", map[string]string{"err": "boom", "next": "1m0s"}},
		{srv.Event{Kind: srv.EventQueryFailed, Name: "n.", Server: "127.0.0.1:53", Err: fail},
			slog.LevelInfo, "resolver: query failed", map[string]string{"server": "127.0.0.1:53", "err": "boom"}},
		{srv.Event{Kind: srv.EventTruncated, Name: "n.", Server: "127.0.0.1:53"},
			slog.LevelDebug, "resolver: truncated", map[string]string{"server": "127.0.0.1:53"}},
		{srv.Event{Kind: srv.EventCapped, Name: "n.", Err: fail},
			slog.LevelWarn, "resolver: capped", map[string]string{"err": "boom"}},
		{srv.Event{Kind: 200, Name: "n."},
			slog.LevelInfo, "resolver: event(200)", map[string]string{"name": "n."}},
	}
	for _, tt := range tests {
		t.Run(tt.ev.Kind.String(), func(t *testing.T) {
			h := &records{min: slog.LevelDebug}
			srv.LogEvents(slog.New(h)).Observe(tt.ev)
			if len(h.list) != 1 {
				t.Fatalf("logged %d records, want 1", len(h.list))
			}
			r := h.list[0]
			if r.Level != tt.level || r.Message != tt.msg {
				t.Errorf("logged %v %q, want %v %q", r.Level, r.Message, tt.level, tt.msg)
			}
			got := map[string]string{}
			r.Attrs(func(a slog.Attr) bool {
				got[a.Key] = a.Value.String()
				return true
			})
			for k, v := range tt.attrs {
				if got[k] != v {
					t.Errorf("attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}

			quiet := &records{min: tt.level + 1}
			srv.LogEvents(slog.New(quiet)).Observe(tt.ev)
			if len(quiet.list) != 0 {
				t.Errorf("logged %v below the handler's level", tt.ev.Kind)
			}
		})
	}
}

func TestEventKindString(t *testing.T) {
	want := map[srv.EventKind]string{
		srv.EventUpdate:       "update",
		srv.EventUnchanged:    "unchanged",
		srv.EventEmptyPending: "empty-pending",
		srv.EventLookupFailed: "lookup-failed",
		srv.EventQueryFailed:  "query-failed",
		srv.EventTruncated:    "truncated",
		srv.EventCapped:       "capped",
		0:                     "event(0)",
		99:                    "event(99)",
	}
	for k, w := range want {
		if got := k.String(); got != w {
			t.Errorf("EventKind(%d).String() = %q, want %q", uint8(k), got, w)
		}
	}
}
