// Package resolver finds the backends of a service and reports them to a
// pool as whole sets.
//
// A [Resolver] runs until its context ends and tells its [Receiver] the
// complete set of backends each time the set changes, and how each lookup
// went. The pool diffs the sets itself, so a resolver never reports
// additions and removals one by one. [Static] serves a fixed list and [Join] merges resolvers;
// the DNS SRV resolver is package resolver/srv, so that this package,
// and the pool, link no DNS client.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Role is what a backend does in a replicated service.
type Role uint8

// The roles a backend can have. RoleUnknown means nobody has said yet: a
// resolver that cannot tell leaves it, and a health check may learn it.
const (
	RoleUnknown Role = iota
	RolePrimary
	RoleReplica
)

// String returns "unknown", "primary" or "replica".
func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	case RoleUnknown:
		return "unknown"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// Backend is one place a service can be reached: an address to dial, and
// what the resolver knows about it.
//
// Backend is a comparable value. Two backends are the same backend when
// their [Backend.Key] is equal; Priority, Weight and Role may change under
// the same key without the pool reconnecting.
type Backend struct {
	// Host is the name the backend is known by: the SRV target (without
	// the trailing dot) or the host of a static list entry. TLS verifies
	// this name, never the IP address in Addr.
	Host string
	// Addr is what to dial: for TCP, "host:port" (a DNS resolver puts the
	// IP address it found here; a static list may put a host name); for a
	// Unix socket, an absolute path, which a dialect may follow with
	// ":port" (PostgreSQL's socket directory and port); for another
	// network, whatever its dialer takes.
	Addr string
	// Network is how Addr is reached: empty for TCP, "unix" for a Unix
	// socket, or the name of a network a driver has a dialer for (such
	// as one registered with go-sql-driver/mysql's RegisterDialContext).
	// Only TCP backends are looked up in DNS and have TLS verify Host.
	Network string
	// Priority is the SRV priority: the pool uses the lowest value that
	// has healthy backends (RFC 2782).
	Priority uint16
	// Weight is the SRV weight: within one priority, a backend's share of
	// the load is proportional to it. Weight 0 counts as 1.
	Weight uint16
	// Role is the backend's role when the resolver knows it, for example
	// from separate SRV names for the primary and the replicas.
	Role Role
}

// NetworkUnix is the [Backend.Network] of a Unix socket.
const NetworkUnix = "unix"

// Key identifies a backend across updates.
type Key struct {
	Host string
	Addr string
}

// String returns "host@addr", or just addr when host is empty, equal to
// addr or equal to the address's host.
func (k Key) String() string {
	if k.Host == "" || k.Host == k.Addr {
		return k.Addr
	}
	if h, _, err := net.SplitHostPort(k.Addr); err == nil && h == k.Host {
		return k.Addr
	}
	return k.Host + "@" + k.Addr
}

// Key returns the backend's identity: its host name and address.
func (b Backend) Key() Key { return Key{Host: b.Host, Addr: b.Addr} }

// String returns the backend's key as a string.
func (b Backend) String() string { return b.Key().String() }

// Validate reports whether the backend can be dialled: for TCP, Addr
// must be "host:port" with a port from 1 to 65535; for a Unix socket, an
// absolute path; for another network, not empty.
func (b Backend) Validate() error {
	switch b.Network {
	case "":
	case NetworkUnix:
		if !strings.HasPrefix(b.Addr, "/") {
			return fmt.Errorf("resolver: Unix socket %q: want an absolute path", b.Addr)
		}
		return nil
	default:
		if b.Addr == "" {
			return fmt.Errorf("resolver: backend on network %q has no address", b.Network)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return fmt.Errorf("resolver: backend address %q: %w", b.Addr, err)
	}
	if host == "" {
		return fmt.Errorf("resolver: backend address %q has no host", b.Addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("resolver: backend address %q: port must be 1 to 65535", b.Addr)
	}
	return nil
}

// A Resolver finds the backends of a service.
//
// Run reports to rc what each lookup finds, first as soon as it knows
// it, until ctx is done; then it returns ctx.Err(). It returns early only
// for an error it cannot recover from, such as a malformed name. rc's
// methods must not be called after Run returns, and never concurrently.
type Resolver interface {
	Run(ctx context.Context, rc Receiver) error
}

// A Receiver takes what a [Resolver] finds. Its methods do not block for
// long.
//
// A resolver calls Update with the complete backend set, first as soon as
// it knows it and then each time it changes (the slice belongs to the
// receiver), and Report with the outcome of each lookup, after Update when
// the lookup changed the set. Report(nil) confirms the set last reported.
// An error says the lookup found no usable backends: either it failed (no
// answer, an answer the resolver could not use) and the last set stands,
// or, right after an Update with an empty set, why the set is empty. The
// error names what was asked, and of whom.
type Receiver interface {
	Update(backends []Backend)
	Report(err error)
}

// UpdateFunc adapts a function that takes backend sets to a [Receiver]
// that ignores reports.
type UpdateFunc func([]Backend)

// Update calls f(backends).
func (f UpdateFunc) Update(backends []Backend) { f(backends) }

// Report does nothing.
func (UpdateFunc) Report(error) {}

// Static is a [Resolver] for a fixed list of backends.
type Static struct {
	backends []Backend
}

// NewStatic returns a resolver that reports backends once and never
// changes. It fails if a backend's address is not "host:port" or two
// backends have the same key.
func NewStatic(backends ...Backend) (*Static, error) {
	seen := make(map[Key]bool, len(backends))
	for _, b := range backends {
		if err := b.Validate(); err != nil {
			return nil, err
		}
		if seen[b.Key()] {
			return nil, fmt.Errorf("resolver: backend %s listed twice", b)
		}
		seen[b.Key()] = true
	}
	return &Static{backends: append([]Backend(nil), backends...)}, nil
}

// ParseAddrs turns "host:port" strings into backends of weight 1, with Host
// set to each address's host. An address without a port gets defaultPort.
// A host that is an absolute path names a Unix socket (a PostgreSQL socket
// directory, a MySQL socket file): its backend's Network is [NetworkUnix]
// and its Addr "path:port".
func ParseAddrs(defaultPort uint16, addrs ...string) ([]Backend, error) {
	if len(addrs) == 0 {
		return nil, errors.New("resolver: no addresses")
	}
	out := make([]Backend, 0, len(addrs))
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			// No port: the whole string is the host (IPv6 literals in
			// brackets lose them).
			host = a
			if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
				host = host[1 : len(host)-1]
			}
			if defaultPort == 0 {
				return nil, fmt.Errorf("resolver: address %q has no port", a)
			}
			port = strconv.Itoa(int(defaultPort))
		}
		b := Backend{Host: host, Addr: net.JoinHostPort(host, port), Weight: 1}
		if strings.HasPrefix(host, "/") {
			b.Network, b.Addr = NetworkUnix, host+":"+port
		} else if !validHost(host) {
			return nil, fmt.Errorf("resolver: address %q: %q is neither an IP address nor a host name", a, host)
		}
		if err := b.Validate(); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Backends returns a copy of the resolver's list.
func (s *Static) Backends() []Backend { return append([]Backend(nil), s.backends...) }

// Run reports the list once, confirms it, and waits for ctx to end.
func (s *Static) Run(ctx context.Context, rc Receiver) error {
	rc.Update(s.Backends())
	rc.Report(nil)
	<-ctx.Done()
	return ctx.Err()
}

// validHost reports whether host can be an IP address or a DNS host name:
// letters, digits, '-', '_', '.' and, for IPv6, ':' and a zone after '%'.
func validHost(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	if ip, zone, ok := strings.Cut(host, "%"); ok && zone != "" && net.ParseIP(ip) != nil {
		return true
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
