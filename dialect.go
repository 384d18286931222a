package qorb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net/url"
	"sort"
	"sync"

	"github.com/qorb-go/qorb/resolver"
)

// A Dialect knows one kind of database: the SRV service it is published
// under, its default port, and how to turn the database part of a DSN into
// an [Opener]. The dialect packages (dialects/pgdialect and
// dialects/mysqldialect) register theirs with [Register] when imported.
type Dialect interface {
	// Name names the dialect in errors and stats, such as "postgres".
	Name() string
	// Service returns the SRV service and protocol labels that a +srv DSN
	// puts before its name, such as "_postgresql._tcp".
	Service() string
	// DefaultPort is the port of a static host given without one.
	DefaultPort() uint16
	// Open returns an Opener for the user, password, database and driver
	// parameters of cfg. It fails for parameters the driver rejects.
	Open(cfg DriverConfig) (Opener, error)
}

// DriverConfig is what a DSN says about the database itself, once qorb
// has taken out its own parameters and the host list.
type DriverConfig struct {
	User     string
	Password string
	Database string
	// Params are the DSN's query parameters meant for the database
	// driver, such as sslmode or parseTime.
	Params url.Values
}

// An Opener opens connections to single backends through a database
// driver's own connector, and looks after them for the pool. Its methods
// are called concurrently, for different connections.
type Opener interface {
	// Connect opens a connection to b. It dials b.Addr and, when TLS is
	// on, verifies the certificate against b.Host, never the IP address
	// DNS gave. ctx bounds the whole connection setup.
	Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error)
	// Ping checks an idle connection with a round trip to the server.
	Ping(ctx context.Context, c driver.Conn) error
	// Recycle decides whether a connection given back may be reused: it
	// fails for one that is broken or inside a transaction. With reset
	// (pool_reset_session) it also resets the session, which takes a
	// round trip, in the background; without it, it must do no I/O, as it
	// runs on the goroutine that gives the connection back.
	Recycle(ctx context.Context, c driver.Conn, reset bool) error
	// Role asks the server whether it is a primary or a replica. A
	// server that answers but cannot say (the query fails or returns
	// nothing: a proxy, an admin console) is resolver.RoleUnknown with a
	// nil error, and stays usable for any role; an error means the
	// connection failed, and counts against the backend as a failed
	// connection or health check does.
	Role(ctx context.Context, c driver.Conn) (resolver.Role, error)
}

var (
	dialectsMu sync.RWMutex
	dialects   = map[string]Dialect{}
)

// Register makes a dialect available under DSN schemes, such as
// "postgres" and "postgres+srv". It is meant to be called from a dialect
// package's init and panics if a scheme is taken, as [sql.Register] does.
func Register(d Dialect, schemes ...string) {
	dialectsMu.Lock()
	defer dialectsMu.Unlock()
	for _, s := range schemes {
		if _, dup := dialects[s]; dup {
			panic(fmt.Sprintf("qorb: Register called twice for scheme %q", s))
		}
		dialects[s] = d
	}
}

// lookupDialect returns the dialect registered for scheme.
func lookupDialect(scheme string) (Dialect, bool) {
	dialectsMu.RLock()
	defer dialectsMu.RUnlock()
	d, ok := dialects[scheme]
	return d, ok
}

// schemes lists the registered schemes, for error messages.
func schemes() []string {
	dialectsMu.RLock()
	defer dialectsMu.RUnlock()
	out := make([]string, 0, len(dialects))
	for s := range dialects {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// A Replicator is an optional interface for an [Opener] of a database that
// replicates. qorb uses it to keep replicas that lag too far behind out of
// reads (pool_max_lag), and for read-your-writes tokens ([WriteToken]).
type Replicator interface {
	// Position returns how far the server's log goes: on a primary, the
	// end of what it has written; on a replica, what it has replayed. The
	// text is the database's own (a PostgreSQL LSN such as "0/3000148", a
	// MariaDB GTID position such as "0-1-100").
	Position(ctx context.Context, c driver.Conn) (string, error)
	// Reached reports whether position have includes everything up to
	// position want. It fails for text that is not a position.
	Reached(have, want string) (bool, error)
	// ReadOnly reports whether err says a statement failed because the
	// server is read-only, as a replica is (PostgreSQL SQLSTATE 25006;
	// MySQL errors 1290, 1792 and 1836).
	ReadOnly(err error) bool
}

// A StaleChecker is an optional interface for an [Opener]: StaleStatement
// reports whether err says that a prepared statement must be prepared
// again because the schema changed under it, and that it did not run
// (PostgreSQL's "cached plan must not change result type", SQLSTATE
// 0A000; MySQL error 1615). qorb then deallocates the statement and,
// outside a transaction, prepares and runs it again.
type StaleChecker interface {
	StaleStatement(err error) bool
}
