package srv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// Errors of the [Resolver]. Errors returned by this package wrap them;
// test with errors.Is.
var (
	// ErrBadName: the SRV name is not a domain name.
	ErrBadName = errors.New("resolver: bad SRV name")
	// ErrBadServer: a name server address is not an IP address with an
	// optional port.
	ErrBadServer = errors.New("resolver: bad name server")
	// ErrNoServers: no name server is configured, and none could be read
	// from resolv.conf.
	ErrNoServers = errors.New("resolver: no name servers")
	// ErrBadConfig: a setting of Config is out of range.
	ErrBadConfig = errors.New("resolver: bad SRV config")

	// ErrNoSuchName: a name server answered that the SRV name does not
	// exist (NXDOMAIN).
	ErrNoSuchName = errors.New("resolver: no such name")
	// ErrNoRecords: the SRV name exists but has no SRV records.
	ErrNoRecords = errors.New("resolver: no SRV records")
	// ErrUnavailable: the SRV name has the single target ".", which says
	// the service is deliberately not available (RFC 2782).
	ErrUnavailable = errors.New("resolver: service not available")
	// ErrNoAddresses: none of the SRV targets has an A or AAAA record.
	ErrNoAddresses = errors.New("resolver: SRV targets have no addresses")

	// ErrTimeout: a name server did not answer in time.
	ErrTimeout = errors.New("resolver: no answer in time")
	// ErrServerFailure: a name server answered SERVFAIL, or another
	// failure code other than REFUSED.
	ErrServerFailure = errors.New("resolver: server failure")
	// ErrRefused: a name server refused to answer (REFUSED).
	ErrRefused = errors.New("resolver: query refused")
	// ErrMalformed: a name server's answer could not be parsed, or
	// answered another question.
	ErrMalformed = errors.New("resolver: malformed answer")
	// ErrUnreachable: a name server could not be reached.
	ErrUnreachable = errors.New("resolver: name server unreachable")
)

// QueryError is a failed question to one name server. It wraps one of
// [ErrTimeout], [ErrServerFailure], [ErrRefused], [ErrMalformed] and
// [ErrUnreachable], and the network or parse error behind it, if any.
type QueryError struct {
	Server string // "ip:port" of the name server
	Name   string // the name asked about, fully qualified
	Type   string // the record type asked for: "SRV", "A" or "AAAA"
	Kind   error  // the sentinel saying what went wrong
	Cause  error  // what the network or the parser said; may be nil
}

// Error says which question to which server failed, and how.
func (e *QueryError) Error() string { return "resolver: " + e.detail() }

func (e *QueryError) detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s from %s: %s", e.Type, e.Name, e.Server, strings.TrimPrefix(e.Kind.Error(), "resolver: "))
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	return b.String()
}

// Unwrap returns the sentinel and the cause.
func (e *QueryError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

// LookupError says that no name server gave a usable answer to a
// question. Errs holds what each of them did.
type LookupError struct {
	Name string // the name asked about, fully qualified
	Type string // "SRV", "A" or "AAAA"
	Errs []*QueryError
}

// Error lists the failures, one per name server.
func (e *LookupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "resolver: no usable answer for %s %s", e.Type, e.Name)
	for i, q := range e.Errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(q.detail())
	}
	return b.String()
}

// Unwrap returns the failures, so that errors.Is(err, ErrTimeout) holds
// when any name server timed out.
func (e *LookupError) Unwrap() []error {
	out := make([]error, len(e.Errs))
	for i, q := range e.Errs {
		out[i] = q
	}
	return out
}

// Record is a backend found in DNS, with the time its records may be
// cached.
type Record struct {
	resolver.Backend
	// TTL is the shorter of the TTLs of the SRV record and of the address
	// record that gave this backend.
	TTL time.Duration
}

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

// String returns the kind's name, such as "update".
func (k EventKind) String() string {
	switch k {
	case EventUpdate:
		return "update"
	case EventUnchanged:
		return "unchanged"
	case EventEmptyPending:
		return "empty-pending"
	case EventLookupFailed:
		return "lookup-failed"
	case EventQueryFailed:
		return "query-failed"
	case EventTruncated:
		return "truncated"
	case EventCapped:
		return "capped"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is something a [Resolver] did, passed to [Config.Observer].
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

// emit passes ev to the observer and the logger.
func (s *Resolver) emit(ev Event) {
	if s.observe != nil {
		s.observe(ev)
	}
	if s.log == nil {
		return
	}
	level := slog.LevelInfo
	msg := "resolver: " + ev.Kind.String()
	switch ev.Kind {
	case EventUpdate:
		msg = "resolver: backend set changed"
	case EventUnchanged, EventTruncated:
		level = slog.LevelDebug
	case EventEmptyPending:
		msg = "resolver: no backends in answer, keeping the last set until confirmed"
		level = slog.LevelWarn
	case EventLookupFailed:
		msg = "resolver: lookup failed, keeping the last set"
		level = slog.LevelWarn
	case EventQueryFailed:
		msg = "resolver: query failed"
	case EventCapped:
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("name", ev.Name))
	if ev.Server != "" {
		attrs = append(attrs, slog.String("server", ev.Server))
	}
	if ev.Kind == EventUpdate || ev.Kind == EventUnchanged {
		list := make([]string, len(ev.Records))
		for i, r := range ev.Records {
			list[i] = fmt.Sprintf("%s prio=%d weight=%d", r.Key(), r.Priority, r.Weight)
		}
		attrs = append(attrs, slog.Int("count", len(list)), slog.Any("backends", list))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("err", ev.Err.Error()))
	}
	if ev.Next > 0 {
		attrs = append(attrs, slog.Duration("next", ev.Next))
	}
	s.log.LogAttrs(ctx, level, msg, attrs...)
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
func (s *Resolver) listening() bool { return s.observe != nil || s.log != nil }

// flush emits the events collected in n and forgets them.
func (s *Resolver) flush(n *notes) {
	for _, ev := range n.events {
		s.emit(ev)
	}
	n.events = n.events[:0]
}
