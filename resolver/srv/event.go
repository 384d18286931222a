package srv

import (
	"strconv"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The kinds of [Event].
const (
	// EventUpdate: a lookup found a backend set different from the last
	// one (or the first one), and Run reported it. Records holds the new
	// set; Err says why it is empty, if it is.
	EventUpdate EventKind = iota + 1
	// EventUnchanged: a lookup found the set Run reported last.
	EventUnchanged
	// EventEmptyPending: a name server said there are no backends (Err
	// says how) while Run still has some. Run keeps them until the next
	// lookup says so too.
	EventEmptyPending
	// EventLookupFailed: no name server gave a usable answer (Err, a
	// *LookupError). Run keeps the last set and retries after Next.
	EventLookupFailed
	// EventQueryFailed: one question to one name server failed (Err, a
	// *QueryError). Another name server may still answer.
	EventQueryFailed
	// EventTruncated: a UDP answer was truncated and the question is
	// asked again over TCP.
	EventTruncated
	// EventCapped: an answer held more records than the caps allow (see
	// Config.MaxBackends); the extra ones were left out.
	EventCapped
)

var eventNames = [...]string{
	EventUpdate:       "update",
	EventUnchanged:    "unchanged",
	EventEmptyPending: "empty-pending",
	EventLookupFailed: "lookup-failed",
	EventQueryFailed:  "query-failed",
	EventTruncated:    "truncated",
	EventCapped:       "capped",
}

// String returns the kind's name, such as "lookup-failed".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is something a [Resolver] did, passed to the [Observer] in
// [Config.Observer].
type Event struct {
	Kind EventKind
	// Name is the SRV name looked up.
	Name string
	// Server is the name server concerned ("ip:port"), when there is one.
	Server string
	// Records is the backend set, for EventUpdate and EventUnchanged. The
	// observer may keep it.
	Records []Record
	// Err is the failure, for EventLookupFailed, EventQueryFailed and
	// EventCapped; why the set is empty, for EventEmptyPending and an
	// empty EventUpdate.
	Err error
	// Next is the wait before the next lookup, for events that end one
	// lookup of Run (EventUpdate, EventUnchanged, EventEmptyPending,
	// EventLookupFailed). It is zero for Resolve and Lookup.
	Next time.Duration
}

// Observer is told of a resolver's events. Observe is called on the
// goroutine running Run, Resolve or Lookup, one event at a time, and must
// not block for long. A resolver without an observer does not build
// events at all.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to [Observer].
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// emit passes ev to the observer.
func (s *Resolver) emit(ev Event) {
	if s.obs != nil {
		s.obs.Observe(ev)
	}
}

// notes collects events on a goroutine that must not call the observer
// (a worker of a parallel query); the owner emits them after joining it.
type notes struct {
	on     bool // someone listens; false: add does nothing
	events []Event
}

func (n *notes) add(ev Event) {
	if n.on {
		n.events = append(n.events, ev)
	}
}

// listening reports whether anyone receives events.
func (s *Resolver) listening() bool { return s.obs != nil }

// flush emits the events collected in n and forgets them.
func (s *Resolver) flush(n *notes) {
	for _, ev := range n.events {
		s.emit(ev)
	}
	n.events = n.events[:0]
}
