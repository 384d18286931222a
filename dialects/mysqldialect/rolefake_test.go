package mysqldialect

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/roletest"
	"github.com/qorb-go/qorb/resolver"
)

// roleServer speaks enough of the MySQL protocol, over a real socket, for
// go-sql-driver/mysql to connect (any user, any password), ping and run
// SELECT 1, the way a proxy or an admin console might: it answers the
// role query (@@global.read_only) as told and every other query with an
// error. It counts the role queries it got in asked.
func roleServer(t *testing.T, role roletest.Answer, asked *atomic.Int64) resolver.Backend {
	return roletest.Listen(t, func(c net.Conn) { serveMySQLFake(c, role, asked) })
}

// Capabilities of the fake: long password, long flag, connect with db,
// protocol 4.1, transactions, secure connection, multi results, plugin
// auth.
var fakeCaps uint32 = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x20000 | 0x80000

// fakeConn reads and writes the packets of one client.
type fakeConn struct {
	r   *bufio.Reader
	w   io.Writer
	seq byte
}

func (f *fakeConn) read() ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	f.seq = h[3] + 1
	p := make([]byte, n)
	_, err := io.ReadFull(f.r, p)
	return p, err
}

func (f *fakeConn) write(p []byte) error {
	h := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), f.seq}
	f.seq++
	_, err := f.w.Write(append(h, p...))
	return err
}

// lenencStr is a length-encoded string of the protocol (short ones only).
func lenencStr(s string) []byte { return append([]byte{byte(len(s))}, s...) }

var (
	okPacket  = []byte{0x00, 0, 0, 0x02, 0, 0, 0}
	eofPacket = []byte{0xfe, 0, 0, 0x02, 0}
)

func errPacket(code uint16, state, msg string) []byte {
	p := []byte{0xff, 0, 0, '#'}
	binary.LittleEndian.PutUint16(p[1:3], code)
	return append(append(p, state...), msg...)
}

// column is the definition of one BIGINT column called name.
func column(name string) []byte {
	var p []byte
	for _, s := range []string{"def", "", "", "", name, ""} {
		p = append(p, lenencStr(s)...)
	}
	return append(p, 0x0c, 63, 0, 20, 0, 0, 0, 0x08, 0, 0, 0, 0, 0)
}

func serveMySQLFake(c net.Conn, role roletest.Answer, asked *atomic.Int64) {
	f := &fakeConn{r: bufio.NewReader(c), w: c}
	hs := []byte{10}
	hs = append(hs, "5.7.99-fake\x00"...)
	hs = append(hs, 1, 0, 0, 0)        // connection id
	hs = append(hs, "abcdefgh\x00"...) // auth data, part 1
	hs = append(hs, byte(fakeCaps), byte(fakeCaps>>8), 45, 0x02, 0)
	hs = append(hs, byte(fakeCaps>>16), byte(fakeCaps>>24), 21)
	hs = append(hs, make([]byte, 10)...)
	hs = append(hs, "ijklmnopqrst\x00"...) // auth data, part 2
	hs = append(hs, "mysql_native_password\x00"...)
	if f.write(hs) != nil {
		return
	}
	if _, err := f.read(); err != nil { // the client's handshake response
		return
	}
	if f.write(okPacket) != nil {
		return
	}
	for {
		p, err := f.read()
		if err != nil || len(p) == 0 {
			return
		}
		var out [][]byte
		switch q := string(p[1:]); {
		case p[0] == 0x0e: // COM_PING
			out = [][]byte{okPacket}
		case p[0] != 0x03: // COM_QUIT, or more than this fake speaks
			return
		case q == "SELECT 1":
			out = [][]byte{{1}, column("1"), eofPacket, lenencStr("1"), eofPacket}
		case strings.Contains(q, "read_only"):
			asked.Add(1)
			switch role {
			case roletest.HangUp:
				return
			case roletest.NoRow:
				out = [][]byte{{1}, column("@@global.read_only"), eofPacket, eofPacket}
			default:
				out = [][]byte{errPacket(1193, "HY000", "Unknown system variable 'read_only'")}
			}
		default:
			out = [][]byte{errPacket(1064, "42000", "this fake does not know: "+q)}
		}
		for _, pk := range out {
			if f.write(pk) != nil {
				return
			}
		}
	}
}

// TestRoleUnknownServer: a server that cannot answer the role query is
// of unknown role; one that hangs up is an error.
func TestRoleUnknownServer(t *testing.T) {
	roletest.Role(t, testOpener(t, nil), roleServer)
}

// TestRoleUnknownServerServes: a backend whose server cannot answer the
// role query is online and serves operations of every role.
func TestRoleUnknownServerServes(t *testing.T) {
	roletest.Serves(t, roleServer, func(b resolver.Backend) (*qorb.Connector, error) {
		return NewConnector("u:pw@tcp(" + b.Addr + ")/d?pool_claim_timeout=5s&pool_health_check_period=50ms")
	})
}
