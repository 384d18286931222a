// Package loopback has the network fixtures the dialect tests share: a TCP
// proxy that reaches a real server through another loopback address (IPv6,
// for instance), a listener that accepts connections and never answers, as
// a SIGSTOPped server does, and a throwaway certificate authority for TLS
// tests.
//
// Every fixture listens on a free port of a loopback address and is torn
// down by t.Cleanup: its listener is closed, its connections are closed and
// its goroutines are waited for.
package loopback

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Listen listens on a free port of host ("127.0.0.1" or "::1"), and skips
// the test when that address family is not available. The listener is
// closed when the test ends.
func Listen(t testing.TB, host string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Serve accepts connections on ln and runs handle for each in its own
// goroutine until the test ends. Then it closes ln and every connection
// and waits for the handlers to return.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // protects conns and done
		conns = map[net.Conn]bool{}
		done  bool
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if done {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// Proxy listens on a free port of host and forwards every connection to
// target. It returns the address it listens on, "host:port".
func Proxy(t testing.TB, host, target string) string {
	t.Helper()
	return SlowProxy(t, host, target, 0)
}

// SlowProxy is Proxy, except that it forwards each connection but the
// first only after delay, as a server far away or busy with TLS
// handshakes would answer.
func SlowProxy(t testing.TB, host, target string, delay time.Duration) string {
	t.Helper()
	ln := Listen(t, host)
	var first sync.Once
	Serve(t, ln, func(c net.Conn) {
		wait := delay
		first.Do(func() { wait = 0 })
		if wait > 0 {
			time.Sleep(wait)
		}
		up, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			io.Copy(up, c)
			up.Close()
		})
		io.Copy(c, up)
		c.Close()
		up.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Silent listens on a free port of 127.0.0.1 and accepts connections but
// never writes a byte, as a stopped server whose kernel still completes
// TCP handshakes. It returns the address it listens on.
func Silent(t testing.TB) string {
	t.Helper()
	ln := Listen(t, "127.0.0.1")
	Serve(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	return ln.Addr().String()
}

// CA is a throwaway certificate authority with one server certificate.
type CA struct {
	// Cert is the server certificate, valid for the names given to NewCA.
	Cert tls.Certificate
	// Pool holds the CA's certificate, for a client's RootCAs.
	Pool *x509.CertPool
	// File is the CA's certificate as a PEM file, for sslrootcert.
	File string
}

// NewCA makes a CA and a server certificate it signed for names (DNS
// names or IP addresses).
func NewCA(t testing.TB, names ...string) *CA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "qorb test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "qorb test server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}

	ca := &CA{
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		Pool: x509.NewCertPool(),
		File: filepath.Join(t.TempDir(), "ca.pem"),
	}
	ca.Pool.AddCert(caCert)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(ca.File, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// Hello is what a TLS server saw of one handshake.
type Hello struct {
	// ServerName is the SNI name the client sent ("" for none).
	ServerName string
	// Err is the handshake's error on the server's side.
	Err error
}

// ServerTLS runs the server side of a TLS handshake on c with the CA's
// certificate and reports what the client sent.
func (ca *CA) ServerTLS(c net.Conn) (*tls.Conn, Hello) {
	var h Hello
	tc := tls.Server(c, &tls.Config{
		Certificates: []tls.Certificate{ca.Cert},
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			h.ServerName = chi.ServerName
			return nil, nil
		},
	})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h.Err = tc.Handshake()
	c.SetDeadline(time.Time{})
	return tc, h
}
