package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// The test dialects. "fake" stands for a driver with its own SRV service;
// "fakemysql" has MySQL's service and port, for the second +srv form.
func init() {
	Register(fakeDialect{name: "fake", service: "_fake._tcp", port: 7000}, "fake", "fake+srv")
	Register(fakeDialect{name: "fakemysql", service: "_mysql._tcp", port: 3306}, "fakemysql", "fakemysql+srv")
}

// fakeDialect opens the fakeOpener that the DSN parameter fake_opener
// names (see registerOpener), so tests that go through sql.Open reach the
// fake they set up. fake_reject=… makes Open fail, as a driver rejecting a
// parameter would.
type fakeDialect struct {
	name, service string
	port          uint16
}

func (d fakeDialect) Name() string        { return d.name }
func (d fakeDialect) Service() string     { return d.service }
func (d fakeDialect) DefaultPort() uint16 { return d.port }

func (d fakeDialect) Open(cfg DriverConfig) (Opener, error) {
	if v := cfg.Params.Get("fake_reject"); v != "" {
		return nil, fmt.Errorf("fake: parameter fake_reject=%s rejected", v)
	}
	name := cfg.Params.Get("fake_opener")
	if name == "" {
		return &fakeOpener{cfg: cfg}, nil
	}
	o, ok := openers.Load(name)
	if !ok {
		return nil, fmt.Errorf("fake: no opener %q", name)
	}
	fo := o.(*fakeOpener)
	fo.mu.Lock()
	fo.cfg = cfg
	fo.mu.Unlock()
	return fo, nil
}

var (
	openers   sync.Map // name → *fakeOpener
	openerSeq atomic.Int64
	mockSeq   atomic.Int64
)

// registerOpener makes o reachable as fake_opener=<name> and returns name.
func registerOpener(t testing.TB, o *fakeOpener) string {
	t.Helper()
	name := "o" + strconv.FormatInt(openerSeq.Add(1), 10)
	openers.Store(name, o)
	t.Cleanup(func() { openers.Delete(name) })
	return name
}

// connKind is what kind of driver conn a fakeOpener hands out.
type connKind int

const (
	// fullKind: a *mockConn, a sqlmock conn that also implements
	// SessionResetter and Validator: every interface database/sql knows.
	fullKind connKind = iota
	// rawKind: the sqlmock conn itself.
	rawKind
	// baseKind: a *baseConn, which has only driver.Conn's methods.
	baseKind
)

// fakeOpener is an Opener whose every connection is a fresh sqlmock
// conn: one mock per slot. script sets each mock's expectations before
// the pool sees the connection; expectations are matched in any order.
type fakeOpener struct {
	kind connKind
	// script sets the expectations of the n-th connection (from 1) to b.
	script func(m sqlmock.Sqlmock, b resolver.Backend, n int)
	// connectErr, if set, makes connections to the backends it returns an
	// error for fail.
	connectErr func(b resolver.Backend) error
	// hang makes Connect wait until its context ends.
	hang bool
	// resetErr, if set, is what ResetSession of the n-th *mockConn to b
	// returns.
	resetErr func(b resolver.Backend, n int) error
	// resetOK is how many calls of ResetSession succeed on each *mockConn
	// before resetErr applies.
	resetOK int64
	// pingFail makes Ping fail.
	pingFail atomic.Bool
	// invalid says whether the n-th *mockConn to b reports itself
	// invalid from the start.
	invalid func(b resolver.Backend, n int) bool

	// fault, when set, is returned by the next ExecContext or QueryContext
	// of any *mockConn, before anything reaches the mock.
	fault atomic.Pointer[error]

	mu       sync.Mutex
	cfg      DriverConfig // what the dialect was given
	conns    []*opened
	perAddr  map[string]int
	recycled map[string]int

	open  atomic.Int64 // connections open now
	pings atomic.Int64
}

var errPing = errors.New("fake: ping: connection reset by peer")

// opened is a connection a fakeOpener handed out.
type opened struct {
	backend string
	n       int
	dc      driver.Conn
	mock    sqlmock.Sqlmock
	tr      *track // nil for rawKind
}

var _ Opener = (*fakeOpener)(nil)

func (o *fakeOpener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	if o.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if o.connectErr != nil {
		if err := o.connectErr(b); err != nil {
			return nil, err
		}
	}
	o.mu.Lock()
	if o.perAddr == nil {
		o.perAddr = map[string]int{}
	}
	o.perAddr[b.Addr]++
	n := o.perAddr[b.Addr]
	o.mu.Unlock()

	dsn := "qorbtest" + strconv.FormatInt(mockSeq.Add(1), 10)
	mdb, m, err := sqlmock.NewWithDSN(dsn, sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		return nil, err
	}
	mc, err := mdb.Driver().Open(dsn)
	// The mock stays registered while mc is open; its own *sql.DB is
	// not needed (closing it fails: no Close was expected).
	mdb.Close()
	if err != nil {
		return nil, err
	}
	m.MatchExpectationsInOrder(false)
	if o.script != nil {
		o.script(m, b, n)
	}

	oc := &opened{backend: b.Addr, n: n, mock: m}
	switch o.kind {
	case rawKind:
		oc.dc = mc
	case fullKind:
		c := &mockConn{m: mc}
		if o.resetErr != nil {
			c.resetErr = o.resetErr(b, n)
			c.resetOK = o.resetOK
		}
		if o.invalid != nil {
			c.invalid.Store(o.invalid(b, n))
		}
		oc.tr, oc.dc = &c.track, c
	case baseKind:
		c := &baseConn{m: mc}
		oc.tr, oc.dc = &c.track, c
	}
	if oc.tr != nil {
		oc.tr.o, oc.tr.backend = o, b.Addr
		o.open.Add(1)
	}
	o.mu.Lock()
	o.conns = append(o.conns, oc)
	o.mu.Unlock()
	return oc.dc, nil
}

func (o *fakeOpener) Ping(ctx context.Context, c driver.Conn) error {
	o.pings.Add(1)
	if o.pingFail.Load() {
		return errPing
	}
	return nil
}

func (o *fakeOpener) Recycle(ctx context.Context, c driver.Conn, reset bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.recycled == nil {
		o.recycled = map[string]int{}
	}
	for _, oc := range o.conns {
		if oc.dc == c {
			o.recycled[oc.backend]++
		}
	}
	return nil
}

func (o *fakeOpener) Role(ctx context.Context, c driver.Conn) (resolver.Role, error) {
	return resolver.RoleUnknown, nil
}

// failNext makes the next ExecContext or QueryContext of any *mockConn
// fail with err.
func (o *fakeOpener) failNext(err error) { o.fault.Store(&err) }

// takeFault returns the error failNext set, once.
func (o *fakeOpener) takeFault() error {
	if p := o.fault.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// find returns the opened connection whose driver conn is dc, or nil.
func (o *fakeOpener) find(dc driver.Conn) *opened {
	for _, oc := range o.opened() {
		if oc.dc == dc {
			return oc
		}
	}
	return nil
}

// conn returns the n-th connection opened to addr, or nil.
func (o *fakeOpener) conn(addr string, n int) *opened {
	for _, oc := range o.opened() {
		if oc.backend == addr && oc.n == n {
			return oc
		}
	}
	return nil
}

// opened returns the connections handed out so far.
func (o *fakeOpener) opened() []*opened {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*opened(nil), o.conns...)
}

// connects returns how many connections to addr were opened.
func (o *fakeOpener) connects(addr string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.perAddr[addr]
}

// recycles returns how many times connections to each backend were given
// back.
func (o *fakeOpener) recycles() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for k, v := range o.recycled {
		out[k] = v
	}
	return out
}

// driverConfig returns what the dialect was given.
func (o *fakeOpener) driverConfig() DriverConfig {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cfg
}

// track counts a fake conn's Close.
type track struct {
	o       *fakeOpener
	backend string
	closed  atomic.Bool
}

func (tr *track) close() {
	if tr.closed.CompareAndSwap(false, true) {
		tr.o.open.Add(-1)
	}
}

// mockConn is a sqlmock conn with what sqlmock lacks: ResetSession and
// IsValid. It forwards everything else to the mock, counting calls.
type mockConn struct {
	track
	m        driver.Conn // the sqlmock conn
	resetErr error       // what ResetSession returns
	resetOK  int64       // calls of ResetSession that succeed before resetErr

	invalid                                         atomic.Bool // IsValid reports false
	resets, valids, pings, execs, queries, prepares atomic.Int64
	faults                                          atomic.Int64 // calls failNext failed

	mu     sync.Mutex
	txOpts []driver.TxOptions // what each BeginTx was given
}

var (
	_ driver.Conn               = (*mockConn)(nil)
	_ driver.ConnBeginTx        = (*mockConn)(nil)
	_ driver.ConnPrepareContext = (*mockConn)(nil)
	_ driver.ExecerContext      = (*mockConn)(nil)
	_ driver.QueryerContext     = (*mockConn)(nil)
	_ driver.Pinger             = (*mockConn)(nil)
	_ driver.NamedValueChecker  = (*mockConn)(nil)
	_ driver.SessionResetter    = (*mockConn)(nil)
	_ driver.Validator          = (*mockConn)(nil)
)

func (c *mockConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *mockConn) Close() error {
	c.close()
	c.m.Close() // fails unless the script expected it
	return nil
}

func (c *mockConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *mockConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.mu.Lock()
	c.txOpts = append(c.txOpts, opts)
	c.mu.Unlock()
	return c.m.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *mockConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.prepares.Add(1)
	return c.m.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

func (c *mockConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.execs.Add(1)
	if err := c.o.takeFault(); err != nil {
		c.faults.Add(1)
		return nil, err
	}
	return c.m.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *mockConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.queries.Add(1)
	if err := c.o.takeFault(); err != nil {
		c.faults.Add(1)
		return nil, err
	}
	return c.m.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c *mockConn) Ping(ctx context.Context) error {
	c.pings.Add(1)
	return c.m.(driver.Pinger).Ping(ctx)
}

// CheckNamedValue accepts point, which database/sql's default converter
// rejects, as pgx accepts its own types.
func (c *mockConn) CheckNamedValue(nv *driver.NamedValue) error {
	if _, ok := nv.Value.(point); ok {
		return nil
	}
	return c.m.(driver.NamedValueChecker).CheckNamedValue(nv)
}

func (c *mockConn) ResetSession(ctx context.Context) error {
	if c.resets.Add(1) <= c.resetOK {
		return nil
	}
	return c.resetErr
}

func (c *mockConn) IsValid() bool {
	c.valids.Add(1)
	return !c.invalid.Load()
}

func (c *mockConn) beginOpts() []driver.TxOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]driver.TxOptions(nil), c.txOpts...)
}

// point is an argument type only mockConn accepts.
type point struct{ X, Y int }

// baseConn has only the methods of driver.Conn, backed by a sqlmock conn.
type baseConn struct {
	track
	m driver.Conn
}

func (c *baseConn) Prepare(q string) (driver.Stmt, error) {
	s, err := c.m.Prepare(q)
	if err != nil {
		return nil, err
	}
	return baseStmt{s}, nil
}

func (c *baseConn) Close() error {
	c.close()
	c.m.Close() // fails unless the script expected it
	return nil
}

//lint:ignore SA1019 a base-only conn has nothing but Begin
func (c *baseConn) Begin() (driver.Tx, error) { return c.m.Begin() }

// baseStmt has only the methods of driver.Stmt, as a base-only driver's
// statements would.
type baseStmt struct{ s driver.Stmt }

func (s baseStmt) Close() error  { return s.s.Close() }
func (s baseStmt) NumInput() int { return s.s.NumInput() }

//lint:ignore SA1019 a base-only statement has nothing but Exec
func (s baseStmt) Exec(args []driver.Value) (driver.Result, error) { return s.s.Exec(args) }

//lint:ignore SA1019 a base-only statement has nothing but Query
func (s baseStmt) Query(args []driver.Value) (driver.Rows, error) { return s.s.Query(args) }

// backends returns n loopback backends; nothing is dialled, since the
// Opener is fake.
func backends(n int) []resolver.Backend {
	bs := make([]resolver.Backend, n)
	for i := range bs {
		bs[i] = resolver.Backend{Host: "127.0.0.1", Addr: "127.0.0.1:" + strconv.Itoa(7001+i), Weight: 1}
	}
	return bs
}

// onePerBackend is a policy of exactly one connection per backend, so that
// each backend is one sqlmock.
func onePerBackend(n int) pool.Policy {
	return pool.Policy{MaxSlots: n, MaxPerBackend: 1}
}

// newConnector starts a Connector over o and a static list of bs, and
// closes it when the test ends, checking that every connection o opened
// was closed.
func newConnector(t testing.TB, o *fakeOpener, pol pool.Policy, bs ...resolver.Backend) *Connector {
	t.Helper()
	return newConnectorWith(t, o, Settings{Policy: pol}, bs...)
}

// newConnectorWith is newConnector with all the settings.
func newConnectorWith(t testing.TB, o *fakeOpener, s Settings, bs ...resolver.Backend) *Connector {
	t.Helper()
	r, err := resolver.NewStatic(bs...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConnector(Config{Opener: o, Resolver: r, Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Connector.Close: %v", err)
		}
		if n := o.open.Load(); n != 0 {
			t.Errorf("%d connections open after Connector.Close, want 0", n)
		}
	})
	return c
}

// openDB returns sql.OpenDB(c), closed when the test ends.
func openDB(t testing.TB, c *Connector) *sql.DB {
	t.Helper()
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// serveBackend scripts the n-th mock of backend b to answer "SELECT
// backend" up to times times with "ADDR/N", naming the physical
// connection.
func serveBackend(m sqlmock.Sqlmock, b resolver.Backend, n, times int) {
	for range times {
		m.ExpectQuery("SELECT backend").WillReturnRows(m.NewRows([]string{"backend"}).AddRow(b.Addr + "/" + strconv.Itoa(n)))
	}
}

// backendOf returns the backend address in an answer of serveBackend.
func backendOf(answer string) string {
	addr, _, _ := strings.Cut(answer, "/")
	return addr
}

// queryBackend runs "SELECT backend" on q and returns the answer.
func queryBackend(t testing.TB, ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) string {
	t.Helper()
	var addr string
	if err := q.QueryRowContext(ctx, "SELECT backend").Scan(&addr); err != nil {
		t.Fatalf("SELECT backend: %v", err)
	}
	return addr
}

// claimed returns the number of connections claimed from c's pool now.
func claimed(c *Connector) int {
	n := 0
	for _, b := range c.Stats().Backends {
		n += b.Claimed
	}
	return n
}

// backendStats returns the stats of addr's backend.
func backendStats(t testing.TB, c *Connector, addr string) pool.BackendStats {
	t.Helper()
	for _, b := range c.Stats().Backends {
		if b.Backend.Addr == addr {
			return b
		}
	}
	t.Fatalf("no stats for backend %s", addr)
	return pool.BackendStats{}
}
