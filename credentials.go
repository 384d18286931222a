package qorb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/qorb-go/qorb/resolver"
)

// ErrCredentials is wrapped by the error of a connection attempt whose
// credentials could not be had: the [CredentialsFunc] failed. Such an
// attempt fails as one the server refused would: it counts against the
// backend, shows as the backend's last error in [Connector.Stats], and a
// claim that finds no connection says it. Match it with [errors.Is], or
// find the [*CredentialsError] with [errors.As].
var ErrCredentials = errors.New("qorb: no credentials")

// Credentials are what a new connection logs in with, in place of the
// DSN's user and password. Every fmt verb prints them without the
// password.
type Credentials struct {
	// User is the user to log in as; empty keeps the DSN's user.
	User string
	// Password is the password (or token) to log in with. It replaces the
	// DSN's password, also when it is empty.
	Password string
}

// String describes cr by its user alone: "qorb.Credentials{user=app}".
func (cr Credentials) String() string {
	return "qorb.Credentials{user=" + cr.User + "}"
}

// GoString returns String, so that %#v shows no password either.
func (cr Credentials) GoString() string { return cr.String() }

// Format writes String for every verb (quoted for %q), so that no verb
// prints the password.
func (cr Credentials) Format(f fmt.State, verb rune) {
	s := cr.String()
	if verb == 'q' {
		s = strconv.Quote(s)
	}
	io.WriteString(f, s)
}

// A CredentialsFunc returns the credentials for one new connection to
// backend b: an IAM authentication token, a password read from a secret
// manager. qorb calls it before every connection attempt, on a goroutine
// of the pool, concurrently for different connections, with the attempt's
// context (bounded by pool_connect_timeout); it never keeps what it
// returns. Caching is the function's own business: one that fetches a
// secret over the network should keep it until it is about to expire or
// is found stale, and return the cached copy meanwhile.
//
// A changed password is used by the connections opened after the change;
// those open already keep their session until their lifetime ends
// (pool_max_conn_lifetime), or until [Connector.Recycle] replaces them.
//
// An error fails the attempt with a [*CredentialsError]. Its text is
// shown in errors, logs and stats as it is, so it must not hold a secret.
type CredentialsFunc func(ctx context.Context, b resolver.Backend) (Credentials, error)

// CredentialsError is the error of a connection attempt whose
// [CredentialsFunc] failed. It wraps [ErrCredentials] and Err.
type CredentialsError struct {
	// Backend is the backend the connection was for.
	Backend resolver.Key
	// Err is the function's error.
	Err error
}

// Error says which backend's credentials failed, and why.
func (e *CredentialsError) Error() string {
	return fmt.Sprintf("qorb: credentials for %s: %v", e.Backend, e.Err)
}

// Unwrap returns ErrCredentials and the function's error.
func (e *CredentialsError) Unwrap() []error { return []error{ErrCredentials, e.Err} }

// A CredentialsOpener is an optional interface for an [Opener] that can
// log in with credentials other than its DSN's: [Config.Credentials]
// needs one. ConnectAs is [SocketOpener.ConnectSockets] (opened may be
// nil) with cr's user, unless it is empty, and cr's password. The dialect
// packages' Openers implement it.
type CredentialsOpener interface {
	ConnectAs(ctx context.Context, b resolver.Backend, cr Credentials, opened func(net.Conn)) (driver.Conn, error)
}

// credentialed opens connections through a CredentialsOpener with the
// credentials its function returns for each.
type credentialed struct {
	creds CredentialsFunc
	co    CredentialsOpener
}

// connect asks for the credentials for b and opens a physical connection
// with them, recording its sockets.
func (cd credentialed) connect(ctx context.Context, b resolver.Backend) (*physConn, error) {
	cr, err := cd.creds(ctx, b)
	if err != nil {
		return nil, &CredentialsError{Backend: b.Key(), Err: err}
	}
	s := &sockets{}
	dc, err := cd.co.ConnectAs(ctx, b, cr, s.opened)
	s.seal()
	if err != nil {
		return nil, err
	}
	return &physConn{dc: dc, key: b.Key(), socks: s}, nil
}

// Recycle replaces, gradually, the connections open or being opened now,
// as HikariCP's softEvictConnections does: after a password change, so
// that no session keeps the old login until its lifetime ends
// (pool_max_conn_lifetime). It returns at once, with how many it marked.
// The pool keeps using them meanwhile: an idle one is replaced in the
// background, one in use once it is released, each backend at the
// connect-rate limit (pool_connect_rate times its share of
// pool_max_conns, pool_connect_burst at once), so that the pool turns
// over in about 1/pool_connect_rate seconds (20 s by default); with the
// limit off (pool_connect_rate=-1), each as soon as it is idle or
// released. Stats().Backends[i].Outdated counts those not replaced yet.
func (c *Connector) Recycle() int { return c.pool.Recycle() }
