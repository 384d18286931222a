package pool

import (
	"context"
	"log/slog"
)

// LogEvents returns an [Observer] that logs each event to l, at a level
// that follows what it means to an operator:
//
//   - Warn: a failed claim, connection attempt, health check or recycle, a
//     connection discarded as broken, a backend going offline, a failed
//     resolver lookup.
//   - Info: a backend added or removed by the resolver, a backend coming
//     online, a resolver lookup that succeeded after failed ones.
//   - Debug: everything else, which happens all the time: claims,
//     releases, connections opened, checks and recycles that passed,
//     rebalances and slot state changes.
//
// Each record's message says what happened ("pool: backend offline"); its
// attributes are those of the event that apply: backend, slot, from, to,
// duration, slots and err. An event below the handler's level costs one
// Enabled call and no allocation. A nil l means [slog.Default].
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
	EventClaim:             {slog.LevelDebug, "pool: claim"},
	EventClaimFailed:       {slog.LevelWarn, "pool: claim failed"},
	EventRelease:           {slog.LevelDebug, "pool: release"},
	EventConnect:           {slog.LevelDebug, "pool: connected"},
	EventConnectFailed:     {slog.LevelWarn, "pool: connection attempt failed"},
	EventHealthCheck:       {slog.LevelDebug, "pool: health check passed"},
	EventHealthCheckFailed: {slog.LevelWarn, "pool: health check failed, connection closed"},
	EventRecycle:           {slog.LevelDebug, "pool: connection recycled"},
	EventRecycleFailed:     {slog.LevelWarn, "pool: recycle failed, connection closed"},
	EventRebalance:         {slog.LevelDebug, "pool: rebalanced"},
	EventBackendAdded:      {slog.LevelInfo, "pool: backend added"},
	EventBackendRemoved:    {slog.LevelInfo, "pool: backend removed"},
	EventBackendOnline:     {slog.LevelInfo, "pool: backend online"},
	EventBackendOffline:    {slog.LevelWarn, "pool: backend offline"},
	EventSlotState:         {slog.LevelDebug, "pool: slot state"},
	EventResolverFailed:    {slog.LevelWarn, "pool: resolver lookup failed"},
	EventResolverRecovered: {slog.LevelInfo, "pool: resolver lookup succeeded again"},
	EventLeak:              {slog.LevelWarn, "pool: connection held past the leak threshold"},
}

func logEvent(l *slog.Logger, e Event) {
	level, msg := slog.LevelInfo, "" // an unknown kind: named below
	if int(e.Kind) < len(eventLevels) {
		level, msg = eventLevels[e.Kind].level, eventLevels[e.Kind].msg
	}
	if e.Kind == EventRelease && e.Err != nil {
		level, msg = slog.LevelWarn, "pool: release, connection discarded as broken"
	}
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	if msg == "" {
		msg = "pool: " + e.Kind.String()
	}
	attrs := make([]slog.Attr, 0, 7)
	if e.Backend.Addr != "" || e.Backend.Host != "" {
		attrs = append(attrs, slog.String("backend", e.Backend.String()))
	}
	if e.Slot != 0 {
		attrs = append(attrs, slog.Uint64("slot", e.Slot))
	}
	if e.Kind == EventSlotState {
		attrs = append(attrs, slog.String("from", e.From.String()), slog.String("to", e.To.String()))
	}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Kind == EventRebalance {
		attrs = append(attrs, slog.Int("slots", e.Slots))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	if e.Stack != "" {
		attrs = append(attrs, slog.String("stack", e.Stack))
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// Observers returns an [Observer] that hands each event to each of obs in
// turn, skipping nil ones: to log events and export metrics from one
// pool, say. With none left it returns nil, so that a pool given it does
// not build events at all.
func Observers(obs ...Observer) Observer {
	var list observers
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return list
}

type observers []Observer

func (os observers) Observe(e Event) {
	for _, o := range os {
		o.Observe(e)
	}
}
