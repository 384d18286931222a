package srv

import (
	"errors"
	"fmt"
	"strings"
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
	// Rcode is the response code of an answer that failed ("SERVFAIL",
	// "REFUSED", ...), "" when there was no such answer.
	Rcode string
	Cause error // what the network or the parser said; may be nil
}

// Error says which question to which server failed, and how:
// "resolver: SRV lookup of _pg._tcp.db.example at 192.0.2.53:53: SERVFAIL".
func (e *QueryError) Error() string {
	return "resolver: " + e.Type + " lookup of " + bare(e.Name) + " at " + e.detail()
}

// detail says which server failed, and how.
func (e *QueryError) detail() string {
	var b strings.Builder
	b.WriteString(e.Server)
	b.WriteString(": ")
	if e.Rcode != "" {
		b.WriteString(e.Rcode)
	} else {
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "resolver: "))
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	return b.String()
}

// bare returns a fully qualified name without its final dot.
func bare(name string) string {
	if len(name) > 1 {
		return strings.TrimSuffix(name, ".")
	}
	return name
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

// Error names the question and says what each name server did:
// "resolver: SRV lookup of NAME at 192.0.2.53:53: SERVFAIL", or with more
// than one "resolver: SRV lookup of NAME: at A: SERVFAIL; at B: ...".
func (e *LookupError) Error() string {
	var b strings.Builder
	b.WriteString("resolver: " + e.Type + " lookup of " + bare(e.Name))
	if len(e.Errs) == 1 {
		b.WriteString(" at ")
		b.WriteString(e.Errs[0].detail())
		return b.String()
	}
	for i, q := range e.Errs {
		if i == 0 {
			b.WriteString(": at ")
		} else {
			b.WriteString("; at ")
		}
		b.WriteString(q.detail())
	}
	if len(e.Errs) == 0 {
		b.WriteString(" failed")
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

// emptyError says why an answer gave no backends. It wraps the sentinel
// that says so: ErrNoSuchName, ErrNoRecords, ErrUnavailable or
// ErrNoAddresses.
type emptyError struct {
	name, server string
	what         string // what the answer said, such as "NXDOMAIN"
	kind         error
}

func (e *emptyError) Error() string {
	return "resolver: SRV lookup of " + bare(e.name) + " at " + e.server + ": " + e.what
}

func (e *emptyError) Unwrap() error { return e.kind }
