package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/statshttp"
)

// sweepPassword is the password of every DSN of the secrets sweep.
const sweepPassword = "S3cr3t-Pa55"

// passwordForms are the ways the password could show: as it is, in any
// case, and percent-encoded in part or whole.
var passwordForms = []string{
	strings.ToLower(sweepPassword),
	"s3cr3t%2dpa55",
	"%53%33%63%72%33%74%2d%50%61%35%35",
	"s3cr3t",
	"pa55",
}

// syncBuffer is a bytes.Buffer for a logger that goroutines of the pool
// write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// sweep collects everything qorb shows of a DSN with a known password.
type sweep struct {
	t    *testing.T
	logs syncBuffer
	log  *slog.Logger
	seen int // texts checked
}

func newSweep(t *testing.T) *sweep {
	s := &sweep{t: t}
	s.log = slog.New(slog.NewTextHandler(&s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return s
}

// check fails the test if text, which qorb showed as what, shows the
// password in any form.
func (s *sweep) check(what, text string) {
	s.t.Helper()
	s.seen++
	low := strings.ToLower(text)
	for _, f := range passwordForms {
		if strings.Contains(low, f) {
			s.t.Errorf("%s shows the password (as %q): %s", what, f, text)
			return
		}
	}
}

// open parses dsn, checks every fmt verb of its Config and Opener, adds
// the sweep's debug logger and opens the database, or returns the error.
func (s *sweep) open(dsn string) (*sql.DB, *qorb.Connector, error) {
	s.t.Helper()
	cfg, err := qorb.ParseDSN(dsn)
	if err != nil {
		return nil, nil, err
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		s.check("Config "+verb, fmt.Sprintf(verb, cfg))
		s.check("Opener "+verb, fmt.Sprintf(verb, cfg.Opener))
	}
	cfg.Logger = s.log
	c, err := qorb.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(c)
	s.t.Cleanup(func() { db.Close() })
	return db, c, nil
}

// query runs SELECT 1 on db within d and returns its error.
func query(db *sql.DB, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// stats checks the stats JSON and the stats page of c.
func (s *sweep) stats(c *qorb.Connector) {
	s.t.Helper()
	h := statshttp.Handler(c)
	for _, target := range []string{"/?format=json", "/"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusOK || len(body) == 0 {
			s.t.Errorf("stats %s: %d, %d bytes", target, rec.Code, len(body))
		}
		s.check("stats "+target, string(body))
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSecretsSweep runs DSNs with a known password down every error path
// (bad host, bad parameter, bad database, backend down, DNS failure, claim
// timeout), with a logger at debug level, and reads the stats JSON and
// page and every fmt verb of the Config and its Opener: the password shows
// nowhere, raw or percent-encoded.
func TestSecretsSweep(t *testing.T) {
	needLocal(t, "127.0.0.1:5432")
	needLocal(t, "127.0.0.1:3306")
	s := newSweep(t)

	// A MariaDB user with the password, so that MySQL logins succeed.
	admin := openQorb(t, localMySQL)
	user := fmt.Sprintf("qorbs_%x", rand.Uint32())
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := admin.ExecContext(t.Context(), fmt.Sprintf("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'", user, host, sweepPassword)); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.ExecContext(t.Context(), fmt.Sprintf("GRANT SELECT ON test.* TO '%s'@'%s'", user, host)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", user, host)) })
	}
	dns := dnstest.NewServer(t) // knows no names: every lookup fails
	down := closedPort(t)
	pw, pwEnc := sweepPassword, "S3cr3t%2DPa55"
	fast := "pool_claim_timeout=500ms&pool_connect_timeout=1s&pool_offline_after=1&pool_backoff_max=100ms"

	// DSNs that must fail in ParseDSN.
	for _, dsn := range []string{
		"postgres://app:" + pw + "@bad host:5432/db",
		"postgres://app:" + pw + "@h:99999/db",
		"postgres://app:" + pwEnc + "@h/db?sslmode=bogus",
		"postgres://app@h/db?pass%77ord=" + pw + "&sslmode=bogus",
		"postgres://app@h/db?password=" + pw + "&pool_bogus=1",
		"postgres://app:" + pw + "@h/db?pool_max_conns=-1",
		"postgres://app:" + pw + "/x@h/db",
		"postgres://app:" + pw + "?x@h/db",
		"mysql://app:" + pw + "@tcp(127.0.0.1:3306)/test",
		"mysql://app:" + pw + "@h/db?parseTime=maybe",
		"mysql://app:" + pwEnc + "@h/db?pool_claim_timeout=-1s",
		"postgres+srv://app:" + pw + "@db.test/db?dns_server=",
		"postgres+srv://app:" + pw + "@bad..name/db?dns_server=" + dns.Addr(),
		"nope://app:" + pw + "@h/db",
	} {
		if _, _, err := s.open(dsn); err == nil {
			t.Errorf("ParseDSN(%q) succeeded, want an error", dsn)
		} else {
			s.check("ParseDSN error", err.Error())
		}
	}

	// DSNs that parse and fail on use: bad database, backend down, DNS
	// failure.
	for _, dsn := range []string{
		"postgres://postgres:" + pw + "@127.0.0.1:5432/qorb_no_such_db?sslmode=disable&" + fast,
		"mysql://" + user + ":" + pw + "@127.0.0.1:3306/qorb_no_such_db?" + fast,
		"mysql://" + user + ":" + pwEnc + "@127.0.0.1:3306/qorb_no_such_db?" + fast,
		"postgres://app:" + pw + "@" + down + "/db?sslmode=disable&" + fast,
		"mysql://app:" + pw + "@" + down + "/db?" + fast,
		"postgres+srv://app:" + pw + "@db.test/db?dns_server=" + dns.Addr() + "&" + fast,
		"mysql+srv://app:" + pw + "@db.test/db?dns_server=" + dns.Addr() + "&" + fast,
	} {
		db, c, err := s.open(dsn)
		if err != nil {
			t.Fatalf("open(%q): %v", dsn, err)
		}
		err = query(db, 10*time.Second)
		if err == nil {
			t.Errorf("%q: SELECT 1 succeeded, want an error", dsn)
			continue
		}
		s.check("query error", err.Error())
		s.check("query error %+v", fmt.Sprintf("%+v", err))
		s.stats(c)
	}

	// Claim timeout: the one connection is taken.
	for _, dsn := range []string{
		"postgres://postgres:" + pw + "@127.0.0.1:5432/test?sslmode=disable&pool_max_conns=1&pool_claim_timeout=200ms",
		"mysql://" + user + ":" + pw + "@127.0.0.1:3306/test?pool_max_conns=1&pool_claim_timeout=200ms",
	} {
		db, c, err := s.open(dsn)
		if err != nil {
			t.Fatalf("open(%q): %v", dsn, err)
		}
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatalf("%q: %v", dsn, err)
		}
		err = query(db, 10*time.Second)
		conn.Close()
		if err == nil {
			t.Errorf("%q: SELECT 1 with the only connection taken succeeded, want a claim timeout", dsn)
		} else {
			s.check("claim timeout", err.Error())
		}
		if err := query(db, 10*time.Second); err != nil {
			t.Errorf("%q: SELECT 1 = %v", dsn, err)
		}
		s.stats(c)
		db.Close()
	}

	logs := s.logs.String()
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "level=WARN") {
		t.Errorf("the logs hold no debug or no warning record:\n%s", logs)
	}
	s.check("logs", logs)
	t.Logf("checked %d texts and %d bytes of logs", s.seen, len(logs))
}
