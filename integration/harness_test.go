// Package integration tests qorb's database/sql driver end to end: real
// PostgreSQL and MariaDB servers started by internal/dbtest, found through
// SRV records served by internal/dnstest, and real TCP faults (killed and
// stopped servers).
package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"runtime"
	"testing"
	"time"

	_ "github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/mysqldialect"
	_ "github.com/qorb-go/qorb/dialects/pgdialect"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/internal/dnstest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// server is what the tests need of a dbtest server, of either engine.
type server interface {
	Port() int
	Kill(testing.TB)
	Start(testing.TB)
	Pause(testing.TB)
	Resume(testing.TB)
	Sessions(testing.TB, string) int
}

// engine describes one database engine under test.
type engine struct {
	name    string
	scheme  string // the +srv scheme
	service string // the SRV service labels
	// portQuery returns the port of the server that ran it, which tells
	// the backends apart.
	portQuery string
	start     func(t testing.TB, n int) []server
	// params are driver parameters every DSN gets.
	params url.Values
}

var engines = []engine{
	{
		name: "postgres", scheme: "postgres+srv", service: "_postgresql._tcp",
		portQuery: "SELECT inet_server_port()",
		start: func(t testing.TB, n int) []server {
			var out []server
			for _, s := range dbtest.StartPostgres(t, n) {
				out = append(out, s)
			}
			return out
		},
		params: url.Values{"sslmode": {"disable"}},
	},
	{
		name: "mariadb", scheme: "mysql+srv", service: "_mysql._tcp",
		portQuery: "SELECT @@port",
		start: func(t testing.TB, n int) []server {
			var out []server
			for _, s := range dbtest.StartMariaDB(t, n) {
				out = append(out, s)
			}
			return out
		},
		params: url.Values{},
	},
}

// cluster is n servers of one engine published under one SRV name.
type cluster struct {
	e       engine
	servers []server
	dns     *dnstest.Server
	name    string // the DSN's host: the SRV name without the service
}

// testPolicy makes failures show within a test's patience.
var testPolicy = url.Values{
	"pool_max_conns":             {"24"},
	"pool_max_conns_per_backend": {"12"},
	"pool_health_check_period":   {"300ms"},
	"pool_health_check_timeout":  {"300ms"},
	"pool_connect_timeout":       {"1s"},
	"pool_backoff_max":           {"300ms"},
	"pool_claim_timeout":         {"5s"},
	"pool_rebalance_interval":    {"1s"},
}

func startCluster(t *testing.T, e engine, n int) *cluster {
	t.Helper()
	c := &cluster{e: e, servers: e.start(t, n), dns: dnstest.NewServer(t), name: "db.test"}
	c.publish(c.servers...)
	return c
}

// publish makes the SRV records list exactly these servers.
func (c *cluster) publish(ss ...server) {
	var recs []dnstest.SRV
	for _, s := range ss {
		i := c.index(s)
		host := fmt.Sprintf("n%d.%s.", i, c.name)
		c.dns.SetA(host, 60, "127.0.0.1")
		recs = append(recs, dnstest.SRV{Priority: 0, Weight: 1, Port: uint16(s.Port()), Target: host, TTL: 1})
	}
	c.dns.SetSRV(c.e.service+"."+c.name+".", recs...)
}

func (c *cluster) index(s server) int {
	for i, x := range c.servers {
		if x == s {
			return i
		}
	}
	panic("server not in cluster")
}

// dsn returns the cluster's qorb DSN with extra parameters.
func (c *cluster) dsn(extra url.Values) string {
	q := url.Values{"dns_server": {c.dns.Addr()}}
	for _, vs := range []url.Values{c.e.params, testPolicy, extra} {
		for k, v := range vs {
			q[k] = v
		}
	}
	return fmt.Sprintf("%s://%s:%s@%s/%s?%s", c.e.scheme, dbtest.User, dbtest.Password, c.name, dbtest.Database, q.Encode())
}

func (c *cluster) open(t *testing.T, extra url.Values) *sql.DB {
	t.Helper()
	db, err := sql.Open("qorb", c.dsn(extra))
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// port runs the engine's port query: which backend served it.
func (c *cluster) port(ctx context.Context, db *sql.DB) (int, error) {
	return sqlPort(db, c.e.portQuery)(ctx)
}

// A portFunc runs a query that returns the port of the server that ran
// it, through one of qorb's faces: database/sql or the native pgx pool.
// The scenarios that both pass take one.
type portFunc func(ctx context.Context) (int, error)

// sqlPort runs query, a port query, through db.
func sqlPort(db *sql.DB, query string) portFunc {
	return func(ctx context.Context) (int, error) {
		var p int
		err := db.QueryRowContext(ctx, query).Scan(&p)
		return p, err
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settledGoroutines returns the number of goroutines once it is down to
// limit, or after d.
func settledGoroutines(limit int, d time.Duration) int {
	deadline := time.Now().Add(d)
	n := runtime.NumGoroutine()
	for n > limit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}
