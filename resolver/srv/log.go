package srv

import (
	"context"
	"fmt"
	"log/slog"
)

// LogEvents returns an [Observer] that logs each event to l, at a level
// that follows what it means to an operator:
//
//   - Warn: a lookup that failed (the last set is kept), an answer without
//     backends held back until the next one confirms it, an answer capped.
//   - Info: a change in the backend set, a question one name server
//     failed to answer.
//   - Debug: a lookup that found the set unchanged, a truncated UDP answer
//     asked again over TCP.
//
// Each record's message says what happened ("resolver: backend set
// changed"); its attributes are those of the event that apply: name,
// server, count and backends (for a set), err and next. An event below
// the handler's level costs one Enabled call and no allocation. A nil l
// means [slog.Default].
func LogEvents(l *slog.Logger) Observer {
	if l == nil {
		l = slog.Default()
	}
	return ObserverFunc(func(e Event) { logEvent(l, e) })
}

// eventLevels is how an event of each kind is logged.
var eventLevels = [...]struct {
	level slog.Level
	msg   string
}{
	EventUpdate:       {slog.LevelInfo, "resolver: backend set changed"},
	EventUnchanged:    {slog.LevelDebug, "resolver: unchanged"},
	EventEmptyPending: {slog.LevelWarn, "resolver: no backends in answer, keeping the last set until confirmed"},
	EventLookupFailed: {slog.LevelWarn, "resolver: lookup failed, keeping the last set"},
	EventQueryFailed:  {slog.LevelInfo, "resolver: query failed"},
	EventTruncated:    {slog.LevelDebug, "resolver: truncated"},
	EventCapped:       {slog.LevelWarn, "resolver: capped"},
}

func logEvent(l *slog.Logger, e Event) {
	level, msg := slog.LevelInfo, "" // an unknown kind: named below
	if int(e.Kind) < len(eventLevels) && eventLevels[e.Kind].msg != "" {
		level, msg = eventLevels[e.Kind].level, eventLevels[e.Kind].msg
	}
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	if msg == "" {
		msg = "resolver: " + e.Kind.String()
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("name", e.Name))
	if e.Server != "" {
		attrs = append(attrs, slog.String("server", e.Server))
	}
	if e.Kind == EventUpdate || e.Kind == EventUnchanged {
		list := make([]string, len(e.Records))
		for i, r := range e.Records {
			list[i] = fmt.Sprintf("%s prio=%d weight=%d", r.Key(), r.Priority, r.Weight)
		}
		attrs = append(attrs, slog.Int("count", len(list)), slog.Any("backends", list))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	if e.Next > 0 {
		attrs = append(attrs, slog.Duration("next", e.Next))
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}
