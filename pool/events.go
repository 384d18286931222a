package pool

import (
	"context"
	"runtime/trace"
	"strconv"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds: qorb's probe points.
const (
	// EventClaim: a claim got a connection. Duration is how long it waited.
	EventClaim EventKind = iota + 1
	// EventClaimFailed: a claim failed. Err says why.
	EventClaimFailed
	// EventRelease: a claim ended. Duration is how long it was held; Err is
	// set when the connection was discarded as broken.
	EventRelease
	// EventConnect: a connection attempt succeeded. Duration is its length.
	EventConnect
	// EventConnectFailed: a connection attempt failed.
	EventConnectFailed
	// EventHealthCheck: a health check passed.
	EventHealthCheck
	// EventHealthCheckFailed: a health check failed; the connection is closed.
	EventHealthCheckFailed
	// EventRecycle: a returned connection was recycled and is idle again.
	EventRecycle
	// EventRecycleFailed: recycling failed; the connection is closed.
	EventRecycleFailed
	// EventRebalance: the pool recomputed how many slots each backend
	// should have. Slots is the new total wanted.
	EventRebalance
	// EventBackendAdded: the resolver reported a new backend.
	EventBackendAdded
	// EventBackendRemoved: the resolver no longer reports a backend.
	EventBackendRemoved
	// EventBackendOnline: a backend accepted a connection after being
	// unknown or offline, or answered a health check after being
	// declared offline for not answering.
	EventBackendOnline
	// EventBackendOffline: a backend is declared offline.
	EventBackendOffline
	// EventSlotState: a slot changed state from From to To.
	EventSlotState
	// EventPrimaryLost: the primary was lost, and the pool asks every
	// backend its role until one says it is the primary.
	EventPrimaryLost
	// EventPrimaryFound: a backend said it is the primary. Duration is
	// how long the pool was without one.
	EventPrimaryFound
	// EventResolverFailed: a lookup of the resolver found no usable
	// backends (Err says why, naming what was asked and of whom): it
	// failed, and the pool keeps the last set, or it said there are none.
	EventResolverFailed
	// EventResolverRecovered: a lookup succeeded after failed ones.
	EventResolverRecovered
	// EventLeak: a claim has been held longer than Policy.LeakThreshold.
	// Duration is how long so far; Stack is where it was made. It is
	// reported once per claim.
	EventLeak
	// EventBackendStalled: a backend stopped answering with claims out on
	// it; Slots is how many claimed connections were aborted.
	EventBackendStalled
	// EventBackendDrained: Drain took a backend out of service.
	EventBackendDrained
	// EventBackendUndrained: Undrain put it back.
	EventBackendUndrained
	// EventPaused: Pause made new claims wait.
	EventPaused
	// EventResumed: Resume let them through again.
	EventResumed
)

var eventNames = [...]string{
	EventClaim:             "claim",
	EventClaimFailed:       "claim-failed",
	EventRelease:           "release",
	EventConnect:           "connect",
	EventConnectFailed:     "connect-failed",
	EventHealthCheck:       "health-check",
	EventHealthCheckFailed: "health-check-failed",
	EventRecycle:           "recycle",
	EventRecycleFailed:     "recycle-failed",
	EventRebalance:         "rebalance",
	EventBackendAdded:      "backend-added",
	EventBackendRemoved:    "backend-removed",
	EventBackendOnline:     "backend-online",
	EventBackendOffline:    "backend-offline",
	EventSlotState:         "slot-state",
	EventPrimaryLost:       "primary-lost",
	EventPrimaryFound:      "primary-found",
	EventResolverFailed:    "resolver-failed",
	EventResolverRecovered: "resolver-recovered",
	EventLeak:              "leak",
	EventBackendStalled:    "backend-stalled",
	EventBackendDrained:    "backend-drained",
	EventBackendUndrained:  "backend-undrained",
	EventPaused:            "paused",
	EventResumed:           "resumed",
}

// String returns the kind's name, such as "connect-failed".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is one thing that happened in a pool. Fields that do not apply to
// the kind are zero.
type Event struct {
	Kind    EventKind
	Backend resolver.Key
	// Slot identifies the slot, unique within the pool.
	Slot uint64
	// From and To are the slot states of an EventSlotState.
	From, To State
	// Err is the error of a failure.
	Err error
	// Duration is the wait, hold, attempt or check time.
	Duration time.Duration
	// Slots is the total number of slots wanted, for EventRebalance.
	Slots int
	// Stack is where the claim was made, for EventLeak: the claiming
	// goroutine's stack, one frame per two lines (the function, then a
	// tab, the file and the line), innermost first.
	Stack string
}

// String formats the event on one line.
func (e Event) String() string {
	s := e.Kind.String()
	if e.Backend != (resolver.Key{}) {
		s += " " + e.Backend.String()
	}
	if e.Slot != 0 {
		s += " slot " + strconv.FormatUint(e.Slot, 10)
	}
	if e.Kind == EventSlotState {
		s += " " + e.From.String() + "→" + e.To.String()
	}
	if e.Duration != 0 {
		s += " " + e.Duration.String()
	}
	if e.Kind == EventRebalance || e.Kind == EventBackendStalled {
		s += " slots=" + strconv.Itoa(e.Slots)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Observer is told of pool events. Observe is called on the goroutine where
// the event happened, never under a pool lock, and must not block: hand
// the event to a channel or a counter. A pool without an observer does not
// build events at all, unless runtime/trace is on, in which case each event
// is also logged to the execution trace under the category "qorb".
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to [Observer].
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// observing reports whether events need to be built at all.
func (p *Pool[C]) observing() bool { return p.obs != nil || trace.IsEnabled() }

// emit hands e to the observer and the execution tracer.
func (p *Pool[C]) emit(e Event) {
	if p.obs != nil {
		p.obs.Observe(e)
	}
	if trace.IsEnabled() {
		trace.Log(context.Background(), "qorb", e.String())
	}
}
