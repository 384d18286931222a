package mysqldialect

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/resolver"
)

// Capability flags of the MySQL protocol that the fake server offers.
const (
	capLongPassword = 1 << 0
	capProtocol41   = 1 << 9
	capSSL          = 1 << 11
	capSecureConn   = 1 << 15
	capPluginAuth   = 1 << 19
)

// handshake is the fake server's initial handshake packet (protocol 10),
// which offers TLS.
func handshake() []byte {
	caps := uint32(capLongPassword | capProtocol41 | capSSL | capSecureConn | capPluginAuth)
	p := []byte{10}
	p = append(p, "8.0.99-qorb-fake\x00"...)
	p = append(p, 1, 0, 0, 0)    // connection ID
	p = append(p, "12345678"...) // first part of the scramble
	p = append(p, 0)             // filler
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, 45)                          // utf8mb4_general_ci
	p = binary.LittleEndian.AppendUint16(p, 2) // SERVER_STATUS_AUTOCOMMIT
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(p, 21) // scramble length
	p = append(p, make([]byte, 10)...)
	p = append(p, "abcdefghijkl\x00"...) // second part of the scramble
	p = append(p, "mysql_native_password\x00"...)
	hdr := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), 0}
	return append(hdr, p...)
}

// fakeServer starts a loopback MySQL server on host that goes as far as
// the TLS handshake a client asks for, with the CA's certificate, and
// reports what the handshake saw; then it hangs up.
func fakeServer(t *testing.T, host string, ca *loopback.CA) (addr string, hellos <-chan loopback.Hello) {
	t.Helper()
	ch := make(chan loopback.Hello, 64)
	ln := loopback.Listen(t, host)
	loopback.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(handshake()); err != nil {
			return
		}
		// The client's SSL request: a 4-byte header and 32 bytes.
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil || n != 32 {
			return
		}
		_, h := ca.ServerTLS(c)
		select {
		case ch <- h:
		default:
		}
	})
	return ln.Addr().String(), ch
}

type quiet struct{}

func (quiet) Print(...any) {}

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
	mysql.RegisterTLSConfig("qorb-test-ca", &tls.Config{RootCAs: ca.Pool})
	mysql.RegisterTLSConfig("qorb-test-ca-pinned", &tls.Config{RootCAs: ca.Pool, ServerName: "db.example"})
	t.Cleanup(func() {
		mysql.DeregisterTLSConfig("qorb-test-ca")
		mysql.DeregisterTLSConfig("qorb-test-ca-pinned")
	})
	tests := []struct {
		name       string
		ip         string
		tls        string
		host       string // the backend's name
		wantSNI    string
		wantVerify bool // the client accepted the certificate
	}{
		{"verify", "127.0.0.1", "qorb-test-ca", "db.example", "db.example", true},
		{"verify, IPv6", "::1", "qorb-test-ca", "db.example", "db.example", true},
		{"verify, wrong name", "127.0.0.1", "qorb-test-ca", "other.example", "other.example", false},
		{"registered name wins", "127.0.0.1", "qorb-test-ca-pinned", "other.example", "db.example", true},
		{"skip-verify sends the name", "127.0.0.1", "skip-verify", "db.example", "db.example", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, hellos := fakeServer(t, tt.ip, ca)
			o := testOpener(t, url.Values{"tls": {tt.tls}})
			o.cfg.Logger = quiet{} // the driver logs the hang-up
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := o.Connect(ctx, resolver.Backend{Host: tt.host, Addr: addr})
			if err == nil {
				c.Close()
				t.Fatal("Connect succeeded against a server that hangs up after TLS")
			}
			h := hello(t, hellos)
			if h.ServerName != tt.wantSNI {
				t.Errorf("server name sent = %q, want %q", h.ServerName, tt.wantSNI)
			}
			certErr := strings.Contains(err.Error(), "certificate")
			if tt.wantVerify && (h.Err != nil || certErr) {
				t.Errorf("handshake failed: server %v, client %v", h.Err, err)
			}
			if !tt.wantVerify && !certErr {
				t.Errorf("Connect = %v, want a certificate error", err)
			}
		})
	}
}
