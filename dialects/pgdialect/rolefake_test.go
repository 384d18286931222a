package pgdialect

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/roletest"
	"github.com/qorb-go/qorb/resolver"
)

// roleServer speaks enough of the PostgreSQL protocol, over a real
// socket, for pgx to connect, ping and run SELECT 1 in the simple
// protocol, the way a proxy or an admin console might: it answers the
// role query as told, and every other query with an error.
// It counts the role queries it got in asked.
func roleServer(t *testing.T, role roletest.Answer, asked *atomic.Int64) resolver.Backend {
	return roletest.Listen(t, func(c net.Conn) { serveFake(c, role, asked) })
}

func serveFake(c net.Conn, role roletest.Answer, asked *atomic.Int64) {
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
		case isRole && role == roletest.HangUp:
			return false
		case isRole && role == roletest.NoRow:
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

// TestRoleUnknownServer: a server that cannot answer the role query is
// of unknown role; one that hangs up is an error.
func TestRoleUnknownServer(t *testing.T) {
	roletest.Role(t, testOpener(t, nil), roleServer)
}

// TestRoleUnknownServerServes: a backend whose server cannot answer the
// role query is online and serves operations of every role, through qorb
// as through the bare driver.
func TestRoleUnknownServerServes(t *testing.T) {
	roletest.Serves(t, roleServer, func(b resolver.Backend) (*qorb.Connector, error) {
		return NewConnector("host=127.0.0.1 port=" + b.Addr[strings.LastIndexByte(b.Addr, ':')+1:] +
			" user=u dbname=d sslmode=disable default_query_exec_mode=simple_protocol" +
			" pool_claim_timeout=5s pool_health_check_period=50ms")
	})
}
