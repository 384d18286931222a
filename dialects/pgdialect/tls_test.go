package pgdialect

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/resolver"
)

// fakeServer starts a loopback PostgreSQL server on host that speaks just
// enough of the protocol for pgx: TLS when asked (with the CA's
// certificate), trust authentication, and simple queries, where the
// position query answers 0/0, the role query (pg_is_in_recovery())
// answers false and anything else gets an empty result. It reports what each TLS handshake saw.
func fakeServer(t *testing.T, host string, ca *loopback.CA) (addr string, hellos <-chan loopback.Hello) {
	t.Helper()
	ch := make(chan loopback.Hello, 64)
	ln := loopback.Listen(t, host)
	loopback.Serve(t, ln, func(c net.Conn) {
		be := pgproto3.NewBackend(c, c)
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.SSLRequest); ok {
			if _, err := c.Write([]byte{'S'}); err != nil {
				return
			}
			tc, h := ca.ServerTLS(c)
			select {
			case ch <- h:
			default:
			}
			if h.Err != nil {
				return
			}
			be = pgproto3.NewBackend(tc, tc)
			if msg, err = be.ReceiveStartupMessage(); err != nil {
				return
			}
		}
		if _, ok := msg.(*pgproto3.StartupMessage); !ok {
			return
		}
		serveQueries(be, nil, func(q string) bool {
			switch {
			case q == positionQuery:
				sendValue(be, "coalesce", 3220, 8, "0/0")
			case strings.Contains(q, "pg_is_in_recovery"):
				sendValue(be, "pg_is_in_recovery", 16, 1, "f")
			default:
				be.Send(&pgproto3.EmptyQueryResponse{})
			}
			return true
		})
	})
	return ln.Addr().String(), ch
}

func hello(t *testing.T, hellos <-chan loopback.Hello) loopback.Hello {
	t.Helper()
	select {
	case h := <-hellos:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no TLS handshake reached the server")
		return loopback.Hello{}
	}
}

// TestTLSServerName: a connection dials the backend's IP address and
// sends and verifies the backend's host name, as it would for an SRV
// target.
func TestTLSServerName(t *testing.T) {
	ca := loopback.NewCA(t, "db.example")
	tests := []struct {
		name     string
		ip       string
		params   url.Values
		host     string // the backend's name
		wantSNI  string
		wantFail bool
	}{
		{"verify-full", "127.0.0.1", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}}, "db.example", "db.example", false},
		{"verify-full, IPv6", "::1", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}}, "db.example", "db.example", false},
		{"verify-full, wrong name", "127.0.0.1", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}}, "other.example", "other.example", true},
		{"prefer sends the name", "127.0.0.1", url.Values{}, "db.example", "db.example", false},
		{"require, sslsni=0", "127.0.0.1", url.Values{"sslmode": {"require"}, "sslsni": {"0"}}, "db.example", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, hellos := fakeServer(t, tt.ip, ca)
			o := testOpener(t, tt.params)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := o.Connect(ctx, resolver.Backend{Host: tt.host, Addr: addr})
			h := hello(t, hellos)
			if h.ServerName != tt.wantSNI {
				t.Errorf("server name sent = %q, want %q", h.ServerName, tt.wantSNI)
			}
			if tt.wantFail {
				if err == nil {
					c.Close()
					t.Fatal("Connect succeeded with a certificate for another name")
				}
				if !strings.Contains(err.Error(), "certificate") {
					t.Errorf("Connect = %v, want a certificate error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer c.Close()
			if role, err := o.Role(ctx, c); err != nil || role != resolver.RolePrimary {
				t.Errorf("Role over TLS = %v, %v", role, err)
			}
		})
	}
}

// TestTLSEndToEnd: verify-full through sql.Open and NewConnector, where
// the hosts are IP addresses that the certificate names.
func TestTLSEndToEnd(t *testing.T) {
	ca := loopback.NewCA(t, "127.0.0.1")
	addr, hellos := fakeServer(t, "127.0.0.1", ca)
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}, "pool_max_conns": {"1"}}.Encode()
	_, p, _ := net.SplitHostPort(addr)
	open := map[string]func() (*sql.DB, error){
		"sql.Open": func() (*sql.DB, error) {
			return sql.Open("qorb", "postgres://app@"+addr+"/app?"+q)
		},
		"NewConnector": func() (*sql.DB, error) {
			c, err := NewConnector("host=127.0.0.1 port=" + p + " user=app dbname=app sslmode=verify-full pool_max_conns=1 sslrootcert=" + ca.File)
			if err != nil {
				return nil, err
			}
			return sql.OpenDB(c), nil
		},
	}
	for name, open := range open {
		t.Run(name, func(t *testing.T) {
			db, err := open()
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := db.PingContext(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if h := hello(t, hellos); h.Err != nil {
				t.Errorf("handshake: %v", h.Err)
			}
		})
	}
}
