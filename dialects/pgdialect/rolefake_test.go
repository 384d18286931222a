package pgdialect

import (
	"context"
	"database/sql"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// roleAnswer is how a roleServer answers the role query.
type roleAnswer int

const (
	roleError  roleAnswer = iota // an ErrorResponse: no such function
	roleNoRow                    // an empty result
	roleHangUp                   // the connection closes
)

// roleServer speaks enough of the PostgreSQL protocol, over a real
// socket, for pgx to connect, ping and run SELECT 1 in the simple
// protocol, the way a proxy or an admin console might: it answers the
// role query as told, and every other query with an error.
// It counts the role queries it got in asked.
func roleServer(t *testing.T, role roleAnswer, asked *atomic.Int64) resolver.Backend {
	t.Helper()
	ln := loopback.Listen(t, "127.0.0.1")
	loopback.Serve(t, ln, func(c net.Conn) { serveFake(c, role, asked) })
	return resolver.Backend{Host: "127.0.0.1", Addr: ln.Addr().String()}
}

func serveFake(c net.Conn, role roleAnswer, asked *atomic.Int64) {
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	params := map[string]string{"server_version": "15.0", "client_encoding": "UTF8",
		"standard_conforming_strings": "on", "DateStyle": "ISO, MDY", "integer_datetimes": "on"}
	serveQueries(be, params, func(q string) bool {
		isRole := strings.Contains(q, "pg_is_in_recovery")
		if isRole {
			asked.Add(1)
		}
		switch {
		case strings.HasPrefix(q, "-- ping"):
			be.Send(&pgproto3.EmptyQueryResponse{})
		case q == "SELECT 1":
			sendValue(be, "?column?", 23, 4, "1")
		case isRole && role == roleHangUp:
			return false
		case isRole && role == roleNoRow:
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("pg_is_in_recovery"), DataTypeOID: 16, DataTypeSize: 1, TypeModifier: -1}}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")})
		default:
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42883", Message: "function does not exist: " + q})
		}
		return true
	})
}

// serveQueries greets the client whose startup message be has read, with
// trust authentication and the run-time parameters params, and answers
// its simple queries with answer, which sends the results (ReadyForQuery
// follows) or returns false to hang up, until the client leaves or sends
// what a fake does not speak.
func serveQueries(be *pgproto3.Backend, params map[string]string, answer func(q string) bool) {
	be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range params {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok || !answer(q.String) { // Terminate, or more than a fake speaks
			return
		}
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if be.Flush() != nil {
			return
		}
	}
}

// sendValue sends a result of one row and one column, called name, of
// type oid and size, holding value in text.
func sendValue(be *pgproto3.Backend, name string, oid uint32, size int16, value string) {
	be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte(name), DataTypeOID: oid, DataTypeSize: size, TypeModifier: -1}}})
	be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(value)}})
	be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
}

// TestRoleUnknownServer checks that a server that cannot answer the role
// query, with an error or with no row, is of unknown role and no error,
// and that one that hangs up is an error.
func TestRoleUnknownServer(t *testing.T) {
	for _, tt := range []struct {
		name    string
		role    roleAnswer
		wantErr bool
	}{
		{"error", roleError, false},
		{"no row", roleNoRow, false},
		{"hang up", roleHangUp, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := roleServer(t, tt.role, new(atomic.Int64))
			o := testOpener(t, nil)
			c := connect(t, o, b)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := o.Ping(ctx, c); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			r, err := o.Role(ctx, c)
			if r != resolver.RoleUnknown || (err != nil) != tt.wantErr {
				t.Errorf("Role = %v, %v; want unknown, error %v", r, err, tt.wantErr)
			}
		})
	}
}

// TestRoleUnknownServerServes checks that a backend whose server cannot
// answer the role query is online and serves operations of every role,
// through qorb as through the bare driver.
func TestRoleUnknownServerServes(t *testing.T) {
	for _, tt := range []struct {
		name string
		role roleAnswer
	}{{"error", roleError}, {"no row", roleNoRow}} {
		t.Run(tt.name, func(t *testing.T) {
			var asked atomic.Int64
			b := roleServer(t, tt.role, &asked)
			c, err := NewConnector("host=127.0.0.1 port=" + b.Addr[strings.LastIndexByte(b.Addr, ':')+1:] +
				" user=u dbname=d sslmode=disable default_query_exec_mode=simple_protocol" +
				" pool_claim_timeout=5s pool_health_check_period=50ms")
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for _, role := range []qorb.Role{qorb.RoleAny, qorb.RolePrimary, qorb.RoleReplica} {
				var one int
				if err := db.QueryRowContext(qorb.WithRole(ctx, role), "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Fatalf("SELECT 1 as %v = %d, %v", role, one, err)
				}
			}
			// Health checks ask the role again and again: the backend
			// stays online and of unknown role, and nothing counts as
			// a failure.
			deadline := time.Now().Add(10 * time.Second)
			for asked.Load() < 4 {
				if time.Now().After(deadline) {
					t.Fatalf("the role was asked %d times in 10s, want health checks to ask it", asked.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
			st := c.Stats()
			if len(st.Backends) != 1 {
				t.Fatalf("%d backends, want 1", len(st.Backends))
			}
			bs := st.Backends[0]
			if bs.Health != pool.HealthOnline || bs.Backend.Role != resolver.RoleUnknown || bs.Failures != 0 {
				t.Errorf("backend %v, role %v, %d failures (last %q); want online, unknown, none",
					bs.Health, bs.Backend.Role, bs.Failures, bs.LastError)
			}
		})
	}
}
