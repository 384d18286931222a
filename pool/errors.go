package pool

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// Errors a claim can fail with, checked with [errors.Is].
var (
	// ErrNoBackends: the resolver has reported no backends at all (or none
	// the claim may use).
	ErrNoBackends = errors.New("pool: no backends known")
	// ErrNoBackendsOnline: every backend the claim may use is offline.
	ErrNoBackendsOnline = errors.New("pool: no backend online")
	// ErrClaimTimeout: no connection came free before the claim timeout or
	// the deadline of the claim's context.
	ErrClaimTimeout = errors.New("pool: claim timed out")
	// ErrTooManyWaiters: the queue of waiting claims is full.
	ErrTooManyWaiters = errors.New("pool: too many claims waiting")
	// ErrClosed: the pool is closed.
	ErrClosed = errors.New("pool: closed")
)

// errNoAnswer is why a backend whose connection attempts and checks went
// unanswered was declared offline (see Policy.SuspectAfter).
var errNoAnswer = errors.New("pool: backend answers no connection attempt or check")

// ClaimError is the error a claim fails with when it waited or found no
// usable backend. It says what each backend the claim could use last did,
// so that "claim timed out" is never all an operator gets.
type ClaimError struct {
	// Err is one of the package's sentinel errors.
	Err error
	// Cause is the context's error when the claim's context ended.
	Cause error
	// Waited is how long the claim waited.
	Waited time.Duration
	// Resolver is the error of the resolver's last lookup, when it failed
	// (or found no backends): with ErrNoBackends it is why there are none;
	// with the other sentinels it says the pool runs on a stale set.
	Resolver error
	// Backends describes each backend the claim could have used.
	Backends []BackendReport
}

// BackendReport is what a [ClaimError] says of one backend.
type BackendReport struct {
	Backend resolver.Key
	Health  Health
	// Idle, Claimed, Connecting and BackingOff count its slots.
	Idle, Claimed, Connecting, BackingOff int
	// LastError is the last connection, health-check or recycle error.
	LastError string
	// LastErrorAge is how long ago LastError happened.
	LastErrorAge time.Duration
}

// Error says why the claim failed, how long it waited, and what each
// backend last did.
func (e *ClaimError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Waited > 0 {
		fmt.Fprintf(&b, " after %v", e.Waited.Round(time.Millisecond))
	}
	if e.Cause != nil && !errors.Is(e.Err, e.Cause) {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	noBackends := e.Resolver != nil && errors.Is(e.Err, ErrNoBackends)
	if noBackends {
		fmt.Fprintf(&b, ": %v", e.Resolver)
	}
	for i, r := range e.Backends {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s", r.Backend, r.Health)
		fmt.Fprintf(&b, " (%d idle, %d claimed, %d connecting, %d backing off)", r.Idle, r.Claimed, r.Connecting, r.BackingOff)
		if r.LastError != "" {
			fmt.Fprintf(&b, ", last error %v ago: %s", r.LastErrorAge.Round(time.Millisecond), r.LastError)
		}
	}
	if e.Resolver != nil && !noBackends {
		fmt.Fprintf(&b, "; backend set stale: %v", e.Resolver)
	}
	return b.String()
}

// Unwrap returns the sentinel error; when the claim's context ended, the
// context's error; and with [ErrNoBackends], the resolver's error that
// says why there are none (so that errors.Is finds, say, the DNS
// resolver's sentinel for a name that does not exist).
func (e *ClaimError) Unwrap() []error {
	out := []error{e.Err}
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	if e.Resolver != nil && errors.Is(e.Err, ErrNoBackends) {
		out = append(out, e.Resolver)
	}
	return out
}
