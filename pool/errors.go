package pool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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

// ErrUnknownBackend is wrapped by the error of [Pool.Drain] and
// [Pool.Undrain] for a backend the pool does not have.
var ErrUnknownBackend = errors.New("pool: no such backend")

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
	// Err is that error itself, nil if none, for [errors.As] to look
	// into: the driver's own error is in its chain.
	Err error
	// LastErrorAge is how long ago LastError happened.
	LastErrorAge time.Duration
}

// Error says why the claim failed, how long it waited, and what each
// backend last did. When every backend last failed with the same error
// ([ClaimError.Common], with the same text), such as the driver's error
// for the one backend configured, its text comes first, as the driver
// would have said it.
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
	if c, same := e.common(); c != nil && same {
		return c.Error() + " (" + b.String() + ")"
	}
	return b.String()
}

// Common returns the error at the root of every backend's last error
// when they are all of the same type, such as a server's refusal of the
// password (*mysql.MySQLError, *pgconn.PgError), or nil: when a backend
// has no error, when their roots differ in type, or when the shared root
// is a context's end, which is the claim's business (Cause), not the
// backends'. A root is the end of an error's chain followed through
// Unwrap methods that return one error. When the roots differ in text
// (the servers named the client differently, say), Common returns the
// first backend's.
func (e *ClaimError) Common() error {
	root, _ := e.common()
	return root
}

// common returns what Common does, and whether every backend's root has
// the same text too.
func (e *ClaimError) common() (root error, same bool) {
	same = true
	for i, r := range e.Backends {
		if r.Err == nil {
			return nil, false
		}
		leaf := rootOf(r.Err)
		if i == 0 {
			root = leaf
			continue
		}
		if reflect.TypeOf(leaf) != reflect.TypeOf(root) {
			return nil, false
		}
		same = same && leaf.Error() == root.Error()
	}
	if root == nil || errors.Is(root, context.Canceled) || errors.Is(root, context.DeadlineExceeded) {
		return nil, false
	}
	return root, same
}

// rootOf follows err's chain to its end through Unwrap methods that
// return one error (an Unwrap() []error with one element counts).
func rootOf(err error) error {
	for {
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			if errs := u.Unwrap(); len(errs) == 1 {
				next = errs[0]
			}
		}
		if next == nil {
			return err
		}
		err = next
	}
}

// Unwrap returns the sentinel error; when the claim's context ended, the
// context's error; with [ErrNoBackends], the resolver's error that says
// why there are none (so that errors.Is finds, say, the DNS resolver's
// sentinel for a name that does not exist); and the error every backend
// last failed with, if they share one ([ClaimError.Common]), so that
// [errors.As] finds the driver's own error type through the claim's.
func (e *ClaimError) Unwrap() []error {
	out := []error{e.Err}
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	if e.Resolver != nil && errors.Is(e.Err, ErrNoBackends) {
		out = append(out, e.Resolver)
	}
	if c := e.Common(); c != nil {
		out = append(out, c)
	}
	return out
}
