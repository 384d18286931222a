package statshttp_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/resolver"
)

// The test dialect: its connections answer "SELECT backend" with
// "ADDR/N", naming the physical connection, and connections to the
// backend its DSN parameter statsfake_dead names fail.
func init() {
	qorb.Register(fakeDialect{}, "statsfake")
}

type fakeDialect struct{}

func (fakeDialect) Name() string        { return "statsfake" }
func (fakeDialect) Service() string     { return "_statsfake._tcp" }
func (fakeDialect) DefaultPort() uint16 { return 7000 }
func (fakeDialect) Open(cfg qorb.DriverConfig) (qorb.Opener, error) {
	return &fakeOpener{dead: cfg.Params.Get("statsfake_dead")}, nil
}

type fakeOpener struct {
	dead   string
	opened atomic.Int64
}

func (o *fakeOpener) Connect(ctx context.Context, b resolver.Backend) (driver.Conn, error) {
	if b.Addr == o.dead {
		// As long as a real driver's error, to show that it wraps.
		return nil, errors.New("fake: failed to connect to `user=app database=appdb`: " + b.Addr +
			" (db4.statsfake.test): dial error: dial tcp " + b.Addr + ": connect: connection refused")
	}
	return answerConn(b.Addr + "/" + strconv.FormatInt(o.opened.Add(1), 10)), nil
}
func (*fakeOpener) Ping(context.Context, driver.Conn) error          { return nil }
func (*fakeOpener) Recycle(context.Context, driver.Conn, bool) error { return nil }
func (*fakeOpener) Role(context.Context, driver.Conn) (resolver.Role, error) {
	return resolver.RoleUnknown, nil
}

// answerConn is a connection that answers "SELECT backend" with itself.
type answerConn string

func (answerConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no statements") }
func (answerConn) Close() error                        { return nil }
func (answerConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake: no transactions") }
func (c answerConn) QueryContext(_ context.Context, q string, _ []driver.NamedValue) (driver.Rows, error) {
	if q != "SELECT backend" {
		return nil, errors.New("fake: unknown query " + q)
	}
	return &answerRows{answer: string(c)}, nil
}

// answerRows is one row of one column, "backend".
type answerRows struct {
	answer string
	done   bool
}

func (*answerRows) Columns() []string { return []string{"backend"} }
func (*answerRows) Close() error      { return nil }
func (r *answerRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = r.answer
	return nil
}

// statsTraffic is a connector over three answering backends and a fourth
// whose connections fail, opened through sql.Open with a password in the
// DSN, after known traffic: queries queries, and one connection held
// claimed on return (closed when the test ends).
type statsTraffic struct {
	c       *qorb.Connector
	db      *sql.DB
	dead    string
	queries int
	served  map[string]int // queries per backend address
}

const statsPassword = "s3cr3t-pw"

func newStatsTraffic(t *testing.T, queries int) *statsTraffic {
	t.Helper()
	hosts := make([]string, 4)
	for i := range hosts {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(7001+i)
	}
	dead := hosts[3]
	dsn := "statsfake://app:" + statsPassword + "@" + strings.Join(hosts, ",") +
		"/appdb?pool_max_conns=4&pool_max_conns_per_backend=1&pool_backoff_min=1m&pool_backoff_max=1m&statsfake_dead=" + dead
	db, err := sql.Open("qorb", dsn)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := t.Context()
	c, err := qorb.ConnectorOf(db)
	if err != nil {
		t.Fatalf("ConnectorOf: %v", err)
	}
	// Wait until the three good backends are up and the dead one has
	// failed, to wait a minute (the backoff) before it tries again.
	waitFor(t, 10*time.Second, "three backends idle and one backing off", func() bool {
		idle, failed := 0, 0
		for _, b := range c.Stats().Backends {
			idle += b.Idle
			if b.LastError != "" && b.BackingOff == 1 {
				failed++
			}
		}
		return idle == 3 && failed == 1
	})
	tr := &statsTraffic{c: c, db: db, dead: dead, queries: queries, served: map[string]int{}}
	for _, b := range c.Stats().Backends {
		tr.served[b.Backend.Addr] = int(b.Claims)
		tr.queries += int(b.Claims)
	}
	for range queries {
		tr.served[queryBackend(t, ctx, db)]++
	}
	// Hold one connection claimed, so that a claim is out.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tr.served[queryBackend(t, ctx, conn)]++
	return tr
}

// queryBackend runs "SELECT backend" on q and returns the address of the
// backend that answered.
func queryBackend(t testing.TB, ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) string {
	t.Helper()
	var answer string
	if err := q.QueryRowContext(ctx, "SELECT backend").Scan(&answer); err != nil {
		t.Fatalf("SELECT backend: %v", err)
	}
	addr, _, _ := strings.Cut(answer, "/")
	return addr
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
