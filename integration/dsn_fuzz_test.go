package integration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/resolver"
)

// fuzzPassword is the password of every DSN FuzzParseDSNReal builds.
const fuzzPassword = "S3cr3t-Pa55"

// dsnParts are the words an error about a DSN may name the part at fault
// with, besides the parameters the DSN carries.
var dsnParts = []string{
	"scheme", "host", "port", "user", "password", "database", "parameter", "address",
	"SRV", "name", "network", "DSN", "dialect", "value", "escape",
}

// maxParseBytes bounds what parsing one DSN and starting its connector
// may allocate.
const maxParseBytes = 8 << 20

// FuzzParseDSNReal parses DSNs of the registered dialects (pgdialect,
// mysqldialect) built around a known password. Nothing panics; every
// error wraps qorb.ErrBadDSN, names the part or parameter at fault, and
// shows the password in no form; and parsing, then starting a connector
// for what parsed (on loopback backends nothing listens on, so nothing
// is looked up or reached), allocates at most a few MB and ends in time.
func FuzzParseDSNReal(f *testing.F) {
	for _, seed := range [][5]string{
		{"postgres", "app", "h1:5432,h2", "db", "sslmode=disable"},
		{"postgres", "u", "h", "db", "pass%77ord=" + fuzzPassword + "&sslmode=bogus"},
		{"postgres", "u", "h", "db", "pool_claim_timeout=-1s"},
		{"postgres", "u", "h", "db", "pool_max_conns=2147483648"},
		{"postgres", "u", "h", "db", "pool_max_conns_per_backend=10000000"},
		{"postgres", "u", "h", "db", "pool_close_timeout=-1s&pool_max_lag=-1s"},
		{"postgres", "u", "%2Fvar%2Frun%2Fpostgresql", "db", ""},
		{"postgres+srv", "u", "db.example", "db", "dns_server="},
		{"postgres+srv", "u", "db.example", "db", "dns_server=127.0.0.1&dns_server=127.0.0.2"},
		{"mysql", "root", "tcp(127.0.0.1:3306)", "test", ""},
		{"mysql", "root", "h:3306", "test", "parseTime=maybe"},
		{"mysql", "root", "h", "test", "pool_max_waiters=-1&pool_offline_after=-1"},
		{"mysql+srv", "root", "_mysql._tcp.db.example", "test", "replica_srv="},
		{"postgresql", "a:b", "h", "d", "password=" + fuzzPassword},
		{"mysql", "u", "h", "db", "pool_backoff_min=1m"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	f.Fuzz(func(t *testing.T, scheme, user, hosts, db, query string) {
		build := func(pw string) string {
			return scheme + "://" + user + ":" + pw + "@" + hosts + "/" + db + "?" + query
		}
		if strings.ContainsAny(user, "?#") {
			// An unescaped '?' in the user name starts the query: what
			// follows is no password to any parser.
			return
		}
		dsn := build(fuzzPassword)
		if strings.Count(strings.ToLower(dsn), "s3cr3t") != 1 || strings.Contains(strings.ToLower(dsn), "pa55") && strings.Count(strings.ToLower(dsn), "pa55") != 1 {
			return // the password shows elsewhere too: it cannot be looked for
		}
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		cfg, err := qorb.ParseDSN(dsn)
		if err != nil {
			checkDSNError(t, dsn, build("xxxxx"), query, err)
		} else {
			startOffline(t, dsn, cfg)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > maxParseBytes {
			t.Errorf("%q: parsing and starting allocated %d bytes, want at most %d", dsn, n, maxParseBytes)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%q: parsing and starting took %v", dsn, d)
		}
	})
}

// checkDSNError checks the error ParseDSN returned for dsn, which is
// redacted when its password is replaced by xxxxx.
func checkDSNError(t *testing.T, dsn, redacted, query string, err error) {
	t.Helper()
	msg := err.Error()
	if !errors.Is(err, qorb.ErrBadDSN) {
		t.Fatalf("ParseDSN(%q) = %v, want it to wrap ErrBadDSN", dsn, err)
	}
	low := strings.ToLower(msg)
	for _, form := range []string{"s3cr3t", "pa55", "%53%33%63", "s3cr3t%2d"} {
		if strings.Contains(low, form) {
			t.Fatalf("ParseDSN(%q) = %v: shows the password", dsn, err)
		}
	}
	// What the error says besides quoting the (redacted) DSN must name
	// the part at fault: a word for it or a parameter of the DSN.
	rest := strings.ReplaceAll(msg, redacted, "")
	if strings.Contains(rest, "://") {
		return // the DSN is quoted differently: the rest cannot be told apart
	}
	for _, w := range dsnParts {
		if strings.Contains(rest, w) {
			return
		}
	}
	params, _ := url.ParseQuery(query)
	for k := range params {
		if k != "" && strings.Contains(rest, k) {
			return
		}
	}
	t.Fatalf("ParseDSN(%q) = %v: names no part of the DSN", dsn, err)
}

// startOffline starts a connector for cfg on loopback backends nothing
// listens on, as many as cfg's resolver has (at most 3), waits until its
// pool knows them, and closes it: so that what the pool sets aside for
// each backend is counted, without looking up or reaching any host.
func startOffline(t *testing.T, dsn string, cfg qorb.Config) {
	t.Helper()
	n := 1
	if s, ok := cfg.Resolver.(*resolver.Static); ok {
		n = min(len(s.Backends()), 3)
	}
	var backends []resolver.Backend
	for i := range n {
		addr := fmt.Sprintf("127.0.0.%d:1", i+1)
		backends = append(backends, resolver.Backend{Host: "127.0.0.1", Addr: addr, Weight: 1})
	}
	r, err := resolver.NewStatic(backends...)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Resolver = r
	cfg.Logger = nil
	c, err := qorb.NewConnector(cfg)
	if err != nil {
		t.Fatalf("ParseDSN(%q) succeeded, but NewConnector = %v: ParseDSN must refuse what the connector cannot use", dsn, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Stats().Backends) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q: the pool never knew its %d backends", dsn, n)
		}
		time.Sleep(time.Millisecond)
	}
}
