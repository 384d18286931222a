package qorb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

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
	return fo.asOpener(), nil
}

var (
	openers   sync.Map // name → *fakeOpener
	openerSeq atomic.Int64
)

// registerOpener makes o reachable as fake_opener=<name> and returns name.
func registerOpener(t testing.TB, o *fakeOpener) string {
	t.Helper()
	name := "o" + strconv.FormatInt(openerSeq.Add(1), 10)
	openers.Store(name, o)
	t.Cleanup(func() { openers.Delete(name) })
	return name
}

// The fake driver: every connection a fakeOpener opens is a fakeConn, a
// database of no tables that understands a tiny query language:
//
//	SELECT backend   one row of one column, "backend": the connection's
//	                 name, ADDR/N for the N-th connection to backend ADDR
//	UPDATE …         no rows; one row affected
//	INSERT …         likewise, but fails with errReadOnly when the
//	                 backend's server says it is a replica (setRole)
//
// Any other statement fails with errUnknownQuery. A conn counts every
// call it serves (see fakeConn.calls), so tests check what reached the
// driver without scripting the order it came in, and the opener injects
// faults: failed or hanging connects, a failing next statement, failing
// session resets and pings, conns that report themselves invalid, and
// servers that turn read-only.

var (
	errPing         = errors.New("fake: ping: connection reset by peer")
	errUnknownQuery = errors.New("fake: unknown query")
	errStmtClosed   = errors.New("fake: statement used after Close")
	errReadOnly     = errors.New("fake: cannot write on a read-only server")
)

// connKind is which of database/sql's optional interfaces the conns a
// fakeOpener hands out implement.
type connKind int

const (
	// fullKind: a *fullConn, which implements every interface
	// database/sql knows, SessionResetter and Validator included.
	fullKind connKind = iota
	// ctxKind: a *ctxConn, with the context methods (ExecerContext,
	// QueryerContext, ConnPrepareContext, ConnBeginTx, Pinger,
	// NamedValueChecker) but neither SessionResetter nor Validator.
	ctxKind
	// baseKind: the *fakeConn itself, which has only driver.Conn's
	// methods, and whose statements have only driver.Stmt's.
	baseKind
)

// fakeOpener is an Opener of fakeConns, one per slot.
type fakeOpener struct {
	kind connKind
	// connectErr, if set, makes connections to the backends it returns an
	// error for fail.
	connectErr func(b resolver.Backend) error
	// hang makes Connect wait until its context ends.
	hang bool
	// resetErr, if set, is what ResetSession of the n-th conn to b
	// returns (fullKind only).
	resetErr func(b resolver.Backend, n int) error
	// resetOK is how many calls of ResetSession succeed on each conn
	// before resetErr applies.
	resetOK int64
	// invalid says whether the n-th conn to b reports itself invalid from
	// the start (fullKind only).
	invalid func(b resolver.Backend, n int) bool
	// pingFail makes Opener.Ping fail with errPing.
	pingFail atomic.Bool
	// replicates makes the opener a Replicator too (see asOpener).
	replicates bool

	// fault, when set, is returned by the next statement any conn runs,
	// in place of its answer.
	fault atomic.Pointer[error]

	mu      sync.Mutex
	cfg     DriverConfig // what the dialect was given
	conns   []*fakeConn
	perAddr map[string]int           // connections opened per backend address
	roles   map[string]resolver.Role // what each backend's server says it is

	open  atomic.Int64 // connections open now
	pings atomic.Int64 // calls of Opener.Ping
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
	defer o.mu.Unlock()
	if o.perAddr == nil {
		o.perAddr = map[string]int{}
	}
	o.perAddr[b.Addr]++
	fc := &fakeConn{o: o, backend: b.Addr, n: o.perAddr[b.Addr]}
	if o.resetErr != nil {
		fc.resetErr, fc.resetOK = o.resetErr(b, fc.n), o.resetOK
	}
	if o.invalid != nil {
		fc.invalid.Store(o.invalid(b, fc.n))
	}
	switch o.kind {
	case fullKind:
		fc.dc = &fullConn{ctxConn{fc}}
	case ctxKind:
		fc.dc = &ctxConn{fc}
	case baseKind:
		fc.dc = fc
	}
	o.conns = append(o.conns, fc)
	o.open.Add(1)
	return fc.dc, nil
}

func (o *fakeOpener) Ping(ctx context.Context, c driver.Conn) error {
	o.pings.Add(1)
	if o.pingFail.Load() {
		return errPing
	}
	return nil
}

func (o *fakeOpener) Recycle(ctx context.Context, c driver.Conn, reset bool) error {
	if fc := o.find(c); fc != nil {
		fc.recycles.Add(1)
	}
	return nil
}

// Role answers what setRole last said for c's backend; RoleUnknown by
// default.
func (o *fakeOpener) Role(ctx context.Context, c driver.Conn) (resolver.Role, error) {
	fc := o.find(c)
	if fc == nil {
		return resolver.RoleUnknown, errors.New("fake: Role of a conn the opener did not make")
	}
	return o.serverRole(fc.backend), nil
}

// setRole makes the server of backend addr say it is r, from its next
// role query on; a replica's server refuses writes.
func (o *fakeOpener) setRole(addr string, r resolver.Role) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.roles == nil {
		o.roles = map[string]resolver.Role{}
	}
	o.roles[addr] = r
}

// serverRole returns what the server of backend addr says it is.
func (o *fakeOpener) serverRole(addr string) resolver.Role {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.roles[addr]
}

// asOpener returns o as a connector is given it: wrapped in a replOpener
// when o.replicates.
func (o *fakeOpener) asOpener() Opener {
	if o.replicates {
		return replOpener{o}
	}
	return o
}

// replOpener is a fakeOpener that is also a Replicator. Every server is at
// position 1, so a token is always reached; ReadOnly recognises
// errReadOnly.
type replOpener struct{ *fakeOpener }

var _ Replicator = replOpener{}

func (replOpener) Position(ctx context.Context, c driver.Conn) (string, error) { return "1", nil }
func (replOpener) Reached(have, want string) (bool, error)                     { return have >= want, nil }
func (replOpener) ReadOnly(err error) bool                                     { return errors.Is(err, errReadOnly) }

// failNext makes the next statement any conn runs fail with err.
func (o *fakeOpener) failNext(err error) { o.fault.Store(&err) }

// takeFault returns the error failNext set, once.
func (o *fakeOpener) takeFault() error {
	if p := o.fault.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// find returns the conn o opened whose driver conn is dc, or nil.
func (o *fakeOpener) find(dc driver.Conn) *fakeConn {
	for _, fc := range o.opened() {
		if fc.dc == dc {
			return fc
		}
	}
	return nil
}

// conn returns the n-th conn opened to addr, or nil.
func (o *fakeOpener) conn(addr string, n int) *fakeConn {
	for _, fc := range o.opened() {
		if fc.backend == addr && fc.n == n {
			return fc
		}
	}
	return nil
}

// opened returns the conns handed out so far.
func (o *fakeOpener) opened() []*fakeConn {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*fakeConn(nil), o.conns...)
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
	out := map[string]int{}
	for _, fc := range o.opened() {
		if n := fc.recycles.Load(); n > 0 {
			out[fc.backend] += int(n)
		}
	}
	return out
}

// calls returns the calls the conns to each backend served, as
// fakeConn.calls counts them, by backend address.
func (o *fakeOpener) calls() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, fc := range o.opened() {
		if out[fc.backend] == nil {
			out[fc.backend] = map[string]int{}
		}
		for k, v := range fc.calls() {
			out[fc.backend][k] += v
		}
	}
	return out
}

// driverConfig returns what the dialect was given.
func (o *fakeOpener) driverConfig() DriverConfig {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cfg
}

// fakeConn is one connection of the fake driver. By itself it is a
// base-only driver.Conn; ctxConn and fullConn add the optional
// interfaces. Its counters may be read while it serves.
type fakeConn struct {
	o       *fakeOpener
	backend string      // its backend's address
	n       int         // it is the n-th connection to backend
	dc      driver.Conn // what Connect returned: fc itself or a wrapper

	resetErr error // what ResetSession returns once resetOK calls passed
	resetOK  int64
	invalid  atomic.Bool // IsValid reports false

	closed   atomic.Bool
	resets   atomic.Int64 // calls of ResetSession
	valids   atomic.Int64 // calls of IsValid
	faults   atomic.Int64 // statements failNext failed
	recycles atomic.Int64 // calls of Opener.Recycle

	mu     sync.Mutex
	as     Credentials        // what ConnectAs was given
	count  map[string]int     // see calls
	txOpts []driver.TxOptions // what each BeginTx was given
}

var _ driver.Conn = (*fakeConn)(nil)

// name is what "SELECT backend" answers on fc.
func (fc *fakeConn) name() string { return fc.backend + "/" + strconv.Itoa(fc.n) }

// record counts one call.
func (fc *fakeConn) record(call string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.count == nil {
		fc.count = map[string]int{}
	}
	fc.count[call]++
}

// calls returns how many times fc served each call, keyed "Exec Q",
// "Query Q", "Prepare Q" (whether through Prepare or PrepareContext),
// "Stmt.Exec Q", "Stmt.Query Q", "Stmt.Close Q" for statement text Q,
// and "Begin", "Commit", "Rollback", "Ping". A statement that failed
// counts too. ResetSession, IsValid and Close have counters of their own.
func (fc *fakeConn) calls() map[string]int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return maps.Clone(fc.count)
}

// ran returns how many times fc served call.
func (fc *fakeConn) ran(call string) int { return fc.calls()[call] }

// beginOpts returns what each BeginTx was given.
func (fc *fakeConn) beginOpts() []driver.TxOptions {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return slices.Clone(fc.txOpts)
}

// exec runs q, counted as call.
func (fc *fakeConn) exec(call, q string) (driver.Result, error) {
	fc.record(call + " " + q)
	if err := fc.fault(); err != nil {
		return nil, err
	}
	if strings.HasPrefix(q, "UPDATE ") || strings.HasPrefix(q, "INSERT ") {
		if fc.o.serverRole(fc.backend) == resolver.RoleReplica {
			return nil, errReadOnly
		}
		return driver.RowsAffected(1), nil
	}
	return nil, fmt.Errorf("%w: %q", errUnknownQuery, q)
}

// query runs q, counted as call.
func (fc *fakeConn) query(call, q string) (driver.Rows, error) {
	fc.record(call + " " + q)
	if err := fc.fault(); err != nil {
		return nil, err
	}
	switch {
	case q == "SELECT backend":
		return &fakeRows{cols: []string{"backend"}, rows: [][]driver.Value{{fc.name()}}}, nil
	case strings.HasPrefix(q, "UPDATE ") || strings.HasPrefix(q, "INSERT "):
		return &fakeRows{}, nil
	}
	return nil, fmt.Errorf("%w: %q", errUnknownQuery, q)
}

// fault returns the error failNext set, counting it.
func (fc *fakeConn) fault() error {
	err := fc.o.takeFault()
	if err != nil {
		fc.faults.Add(1)
	}
	return err
}

func (fc *fakeConn) prepare(q string) *fakeStmt {
	fc.record("Prepare " + q)
	return &fakeStmt{fc: fc, q: q}
}

// Prepare gives a base-only conn's statement: one with only driver.Stmt's
// methods.
func (fc *fakeConn) Prepare(q string) (driver.Stmt, error) { return fc.prepare(q), nil }

func (fc *fakeConn) Close() error {
	if fc.closed.CompareAndSwap(false, true) {
		fc.o.open.Add(-1)
	}
	return nil
}

func (fc *fakeConn) Begin() (driver.Tx, error) {
	fc.record("Begin")
	return fakeTx{fc}, nil
}

// ctxConn is a fakeConn with the context methods and the other optional
// interfaces database/sql uses, but no SessionResetter or Validator.
type ctxConn struct{ *fakeConn }

var (
	_ driver.ConnBeginTx        = (*ctxConn)(nil)
	_ driver.ConnPrepareContext = (*ctxConn)(nil)
	_ driver.ExecerContext      = (*ctxConn)(nil)
	_ driver.QueryerContext     = (*ctxConn)(nil)
	_ driver.Pinger             = (*ctxConn)(nil)
	_ driver.NamedValueChecker  = (*ctxConn)(nil)
)

func (c *ctxConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *ctxConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return ctxStmt{c.prepare(q)}, nil
}

func (c *ctxConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.mu.Lock()
	c.txOpts = append(c.txOpts, opts)
	c.mu.Unlock()
	return c.Begin()
}

func (c *ctxConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.exec("Exec", q)
}

func (c *ctxConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.query("Query", q)
}

func (c *ctxConn) Ping(ctx context.Context) error {
	c.record("Ping")
	return nil
}

// CheckNamedValue accepts point, which database/sql's default converter
// rejects, as pgx accepts its own types; anything else gets the default
// conversion.
func (c *ctxConn) CheckNamedValue(nv *driver.NamedValue) error {
	if _, ok := nv.Value.(point); ok {
		return nil
	}
	return driver.ErrSkip
}

// point is an argument type only a ctxConn accepts.
type point struct{ X, Y int }

// fullConn is a ctxConn that also resets its session and reports whether
// it is still valid.
type fullConn struct{ ctxConn }

var (
	_ driver.SessionResetter = (*fullConn)(nil)
	_ driver.Validator       = (*fullConn)(nil)
)

func (c *fullConn) ResetSession(ctx context.Context) error {
	if c.resets.Add(1) <= c.resetOK {
		return nil
	}
	return c.resetErr
}

func (c *fullConn) IsValid() bool {
	c.valids.Add(1)
	return !c.invalid.Load()
}

// fakeStmt is a statement prepared on a fakeConn, with only driver.Stmt's
// methods; ctxStmt adds the context ones.
type fakeStmt struct {
	fc     *fakeConn
	q      string
	closed atomic.Bool
}

func (s *fakeStmt) Close() error {
	s.fc.record("Stmt.Close " + s.q)
	if !s.closed.CompareAndSwap(false, true) {
		return errStmtClosed
	}
	return nil
}

// NumInput says the fake does not check the number of arguments.
func (s *fakeStmt) NumInput() int { return -1 }

func (s *fakeStmt) Exec(args []driver.Value) (driver.Result, error) {
	if s.closed.Load() {
		return nil, errStmtClosed
	}
	return s.fc.exec("Stmt.Exec", s.q)
}

func (s *fakeStmt) Query(args []driver.Value) (driver.Rows, error) {
	if s.closed.Load() {
		return nil, errStmtClosed
	}
	return s.fc.query("Stmt.Query", s.q)
}

// ctxStmt is a fakeStmt with the context methods.
type ctxStmt struct{ *fakeStmt }

var (
	_ driver.StmtExecContext  = ctxStmt{}
	_ driver.StmtQueryContext = ctxStmt{}
)

func (s ctxStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.Exec(nil)
}

func (s ctxStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.Query(nil)
}

// fakeTx is a transaction on a fakeConn.
type fakeTx struct{ fc *fakeConn }

func (tx fakeTx) Commit() error {
	tx.fc.record("Commit")
	return nil
}

func (tx fakeTx) Rollback() error {
	tx.fc.record("Rollback")
	return nil
}

// fakeRows is the answer to a query.
type fakeRows struct {
	cols []string
	rows [][]driver.Value
}

func (r *fakeRows) Columns() []string { return r.cols }
func (r *fakeRows) Close() error      { return nil }

func (r *fakeRows) Next(dest []driver.Value) error {
	if len(r.rows) == 0 {
		return io.EOF
	}
	copy(dest, r.rows[0])
	r.rows = r.rows[1:]
	return nil
}

// checkCalls fails t unless fc served exactly the calls in want (as
// fakeConn.calls counts them).
func checkCalls(t testing.TB, fc *fakeConn, want map[string]int) {
	t.Helper()
	if got := fc.calls(); !maps.Equal(got, want) {
		t.Errorf("connection %s served %v, want exactly %v", fc.name(), got, want)
	}
}

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
// each backend is one fake conn.
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
	return startConnector(t, o.asOpener(), &o.open, s, bs...)
}

// startConnector starts a Connector over the backends bs with opener o,
// and closes it when the test ends, checking that open, o's count of
// connections not closed, is back to 0.
func startConnector(t testing.TB, o Opener, open *atomic.Int64, s Settings, bs ...resolver.Backend) *Connector {
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
		if n := open.Load(); n != 0 {
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

// backendOf returns the backend address in an answer to "SELECT backend".
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
