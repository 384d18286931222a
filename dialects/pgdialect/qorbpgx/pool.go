package qorbpgx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/pgdialect"
	"github.com/qorb-go/qorb/pool"
)

// Config configures a [Pool]. Make it with [ParseConfig], and set the
// hooks or change the settings before [NewWithConfig].
type Config struct {
	// Config is the qorb configuration a DSN stands for: its Opener must
	// be pgdialect's, as ParseConfig makes it.
	qorb.Config

	// AfterConnect runs on each new connection before the pool uses it,
	// as pgxpool's does; a connection it fails is closed, and the attempt
	// counts as a failed connection attempt to its backend.
	AfterConnect func(context.Context, *pgx.Conn) error
	// PrepareConn runs on each connection before it is handed out, as
	// pgxpool's does: true and a nil error hand it out; false closes it
	// and, with a nil error, takes another (up to 8 in all); an error
	// fails the operation, closing the connection unless it said true.
	PrepareConn func(context.Context, *pgx.Conn) (bool, error)
	// AfterRelease runs on each connection given back, before the pool
	// recycles it: false closes it. It runs on the releasing goroutine,
	// or in the background with pool_reset_session.
	AfterRelease func(*pgx.Conn) bool
	// BeforeClose runs on each connection right before the pool closes it.
	BeforeClose func(*pgx.Conn)
}

// ParseConfig parses a connection string as the qorb driver does, and
// also as pgx does:
//
//	postgres+srv://user:pass@NAME/db?params        SRV records, as the driver
//	postgres://user:pass@h1:5432,h2:5433/db?params a static list, as the driver
//	host=h1,h2 user=app dbname=app pool_max_conns=20  pgx's keyword/value form
//
// with the same parameters: pool_ parameters, target_session_attrs (the
// default role), pool_max_lag, replica_srv, dns_server, and every pgx
// connection parameter. Errors wrap [qorb.ErrBadDSN] and never show the
// password.
func ParseConfig(connString string) (*Config, error) {
	var (
		qc  qorb.Config
		err error
	)
	scheme, _, isURL := strings.Cut(connString, "://")
	switch {
	case !isURL:
		qc, err = pgdialect.ParseConnString(connString)
	case scheme == "postgres" || scheme == "postgresql" || scheme == "postgres+srv" || scheme == "postgresql+srv":
		qc, err = qorb.ParseDSN(connString)
	default:
		return nil, fmt.Errorf("%w: qorbpgx: scheme %q: want postgres, postgresql, postgres+srv or postgresql+srv", qorb.ErrBadDSN, scheme)
	}
	if err != nil {
		return nil, err
	}
	return &Config{Config: qc}, nil
}

// Pool is a pool of pgx connections to the backends of a PostgreSQL
// service, with pgxpool's everyday API. It is qorb's pool, as the qorb
// database/sql driver has it: it finds the backends through DNS SRV
// records or a static list, spreads operations over them, health-checks
// and recycles the connections, routes each operation by the role its
// context asks for ([qorb.WithRole]) or the default (target_session_attrs),
// keeps lagging replicas out of reads (pool_max_lag), steers reads past
// a write token ([qorb.WithWriteToken], [Pool.WriteToken]), and rides
// through a backend dying or stalling.
//
// Each operation leases a connection for itself and gives it back when it
// ends; [Pool.Acquire] and transactions keep theirs until released. A read
// that is safe to repeat ([qorb.Repeatable], or a replica role) whose
// connection dies before its first row runs again on another connection.
//
// It is safe for concurrent use.
type Pool struct {
	c       *qorb.Connector
	prepare func(context.Context, *pgx.Conn) (bool, error)
}

// New parses connString with [ParseConfig] and starts a Pool for it.
func New(ctx context.Context, connString string) (*Pool, error) {
	cfg, err := ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	return NewWithConfig(ctx, cfg)
}

// NewWithConfig starts a Pool for cfg: it begins finding backends and
// opening connections in the background, and returns without waiting for
// any, as pgxpool does. ctx is only checked: a Pool lives until Close.
func NewWithConfig(ctx context.Context, cfg *Config) (*Pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	po, ok := cfg.Opener.(*pgdialect.Opener)
	if !ok {
		return nil, fmt.Errorf("qorbpgx: NewWithConfig needs pgdialect's Opener (from ParseConfig), not %T", cfg.Opener)
	}
	qc := cfg.Config
	qc.Opener = &opener{Opener: po, afterConnect: cfg.AfterConnect, afterRelease: cfg.AfterRelease, beforeClose: cfg.BeforeClose}
	c, err := qorb.NewConnector(qc)
	if err != nil {
		return nil, err
	}
	return &Pool{c: c, prepare: cfg.PrepareConn}, nil
}

// maxPrepareAttempts bounds the connections one operation takes when
// PrepareConn refuses them.
const maxPrepareAttempts = 8

// lease leases a connection for ctx's operation and has PrepareConn
// accept it.
func (p *Pool) lease(ctx context.Context) (*pconn, error) {
	for attempt := 1; ; attempt++ {
		l, err := p.c.Lease(ctx)
		if err != nil {
			return nil, err
		}
		pc := l.Conn().(*pconn)
		pc.l, pc.err = l, nil
		if p.prepare == nil {
			return pc, nil
		}
		ok, err := p.prepare(ctx, pc.pgx)
		if ok && err == nil {
			return pc, nil
		}
		pc.drop = !ok
		l.Release()
		switch {
		case err != nil:
			return nil, err
		case attempt == maxPrepareAttempts:
			return nil, fmt.Errorf("qorbpgx: PrepareConn refused %d connections in a row", attempt)
		}
	}
}

// Acquire leases a connection, from a backend ctx's role and write token
// allow, and keeps it, and so its backend, until [Conn.Release].
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	pc, err := p.lease(ctx)
	if err != nil {
		return nil, err
	}
	c := pc.conns.next()
	c.pc = pc
	return c, nil
}

// AcquireFunc acquires a connection, calls f with it and releases it.
func (p *Pool) AcquireFunc(ctx context.Context, f func(*Conn) error) error {
	c, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(c)
}

// Exec runs sql on a leased connection, as [pgx.Conn.Exec] does. It is
// never run twice.
func (p *Pool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	pc, err := p.lease(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := pc.pgx.Exec(ctx, sql, args...)
	err = pc.check(err)
	pc.release()
	return tag, err
}

// maxQueryAttempts bounds the connections a repeatable read runs on.
const maxQueryAttempts = 3

// query runs sql on a leased connection and reads the first row, so that
// a read safe to repeat whose connection dies before it runs again on
// another. It returns the rows and whether they have a first row; rows
// without one are closed and their connection released.
func (p *Pool) query(ctx context.Context, sql string, args []any) (*pconn, pgx.Rows, bool, error) {
	for attempt := 1; ; attempt++ {
		pc, err := p.lease(ctx)
		if err != nil {
			return nil, nil, false, err
		}
		r, err := pc.pgx.Query(ctx, sql, args...)
		if err == nil {
			if r.Next() {
				return pc, r, true, nil
			}
			if err = r.Err(); err == nil {
				return pc, r, false, nil
			}
		}
		err = pc.check(err)
		again := pc.broken() && attempt < maxQueryAttempts && pc.l.Repeatable(ctx)
		pc.release()
		if !again {
			return nil, nil, false, err
		}
	}
}

// Query runs sql on a leased connection, as [pgx.Conn.Query] does. The
// connection goes back to the pool when the rows are read to the end or
// closed. An error before the first row comes back here rather than from
// the rows' Err.
func (p *Pool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	pc, r, first, err := p.query(ctx, sql, args)
	if err != nil {
		return errRows{err}, err
	}
	rs := pc.rows.next()
	*rs = rows{r: r, pc: pc, peeked: first}
	if !first {
		rs.pc = nil
		pc.release()
	}
	return rs, nil
}

// QueryRow runs sql on a leased connection, as [pgx.Conn.QueryRow] does:
// errors are deferred to the row's Scan, which gives the connection back.
func (p *Pool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	pc, r, first, err := p.query(ctx, sql, args)
	switch {
	case err != nil:
		return errRow{err}
	case !first:
		pc.release()
		return errRow{pgx.ErrNoRows}
	}
	rw := pc.row.next()
	*rw = row{r: r, pc: pc}
	return rw
}

// SendBatch sends b on a leased connection, as [pgx.Conn.SendBatch] does.
// The connection goes back to the pool when the results are closed, or,
// if b begins a transaction ([pgx.Batch.BeginTx]), when it ends.
func (p *Pool) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	pc, err := p.lease(ctx)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	br := pc.pgx.SendBatch(ctx, b)
	if t := br.Tx(); t != nil {
		return &batch{BatchResults: br, tx: &tx{Tx: t, pc: pc}}
	}
	return &batch{BatchResults: br, pc: pc}
}

// Begin leases a connection and begins a transaction on it, which keeps
// the connection until it commits or rolls back.
func (p *Pool) Begin(ctx context.Context) (pgx.Tx, error) {
	return p.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx is Begin with the transaction options opts.
func (p *Pool) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	pc, err := p.lease(ctx)
	if err != nil {
		return nil, err
	}
	t, err := pc.pgx.BeginTx(ctx, opts)
	if err != nil {
		err = pc.check(err)
		pc.release()
		return nil, err
	}
	return &tx{Tx: t, pc: pc}, nil
}

// CopyFrom copies rows into a table on a leased connection, as
// [pgx.Conn.CopyFrom] does.
func (p *Pool) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	pc, err := p.lease(ctx)
	if err != nil {
		return 0, err
	}
	n, err := pc.pgx.CopyFrom(ctx, table, columns, src)
	err = pc.check(err)
	pc.release()
	return n, err
}

// Ping leases a connection and checks it with a round trip to the server.
func (p *Pool) Ping(ctx context.Context) error {
	pc, err := p.lease(ctx)
	if err != nil {
		return err
	}
	err = pc.check(pc.pgx.Ping(ctx))
	pc.release()
	return err
}

// WriteToken returns a token for every write the primary has made so far:
// call it after a write commits, and pass it to later reads with
// [qorb.WithWriteToken], which then see the write.
func (p *Pool) WriteToken(ctx context.Context) (qorb.Token, error) {
	return p.c.WriteToken(ctx)
}

// Close closes the pool as pgxpool's Close does: operations that start
// later fail, idle connections close at once, and Close waits for those
// in use to be released, closing each as it comes back, for up to the
// close timeout (pool_close_timeout, default 5 s), after which it closes
// them anyway. It may be called more than once.
func (p *Pool) Close() {
	_ = p.c.Shutdown(context.Background())
}

// Shutdown is Close bounded by ctx instead of the close timeout, when ctx
// has a deadline. It returns an error wrapping ctx's error when it had to
// close connections still in use.
func (p *Pool) Shutdown(ctx context.Context) error {
	return p.c.Shutdown(ctx)
}

// Stats returns a snapshot of qorb's pool, as [qorb.Connector.Stats]
// does: what the stats page (statshttp.Handler), the OpenTelemetry
// metrics and qorb top read.
func (p *Pool) Stats() pool.Stats { return p.c.Stats() }

// Connector returns the qorb Connector the pool runs on.
func (p *Pool) Connector() *qorb.Connector { return p.c }

// Stat returns pgxpool's statistics of the pool, summed over its
// backends.
func (p *Pool) Stat() *Stat {
	st := p.c.Stats()
	s := &Stat{max: int32(st.MaxSlots), canceled: int64(st.Timeouts)}
	for _, b := range st.Backends {
		s.acquired += int32(b.Claimed)
		s.idle += int32(b.Idle)
		s.constructing += int32(b.Connecting)
		s.total += int32(b.Slots())
		s.acquires += int64(b.Claims)
		s.waits += int64(b.Waits)
		s.waitTime += b.WaitTime
	}
	return s
}

// Stat is a snapshot of a Pool's statistics, with pgxpool's methods.
type Stat struct {
	acquired, idle, constructing, total, max int32
	acquires, waits, canceled                int64
	waitTime                                 time.Duration
}

// AcquireCount is the number of connections leased so far.
func (s *Stat) AcquireCount() int64 { return s.acquires }

// AcquireDuration is the total time leases waited for a connection.
func (s *Stat) AcquireDuration() time.Duration { return s.waitTime }

// AcquiredConns is the number of connections leased now.
func (s *Stat) AcquiredConns() int32 { return s.acquired }

// CanceledAcquireCount is the number of leases whose context ended, or
// whose claim timeout passed, while they waited.
func (s *Stat) CanceledAcquireCount() int64 { return s.canceled }

// ConstructingConns is the number of connections being opened now.
func (s *Stat) ConstructingConns() int32 { return s.constructing }

// EmptyAcquireCount is the number of leases that had to wait for a
// connection.
func (s *Stat) EmptyAcquireCount() int64 { return s.waits }

// EmptyAcquireWaitTime is the total time those leases waited.
func (s *Stat) EmptyAcquireWaitTime() time.Duration { return s.waitTime }

// IdleConns is the number of idle connections now.
func (s *Stat) IdleConns() int32 { return s.idle }

// MaxConns is the most connections the pool keeps (pool_max_conns).
func (s *Stat) MaxConns() int32 { return s.max }

// TotalConns is the number of connections now, in any state.
func (s *Stat) TotalConns() int32 { return s.total }

var errScanned = errors.New("qorbpgx: the row was scanned already")
