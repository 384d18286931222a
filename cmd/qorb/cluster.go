//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/sirupsen/logrus"

	"github.com/qorb-go/qorb/internal/dnstest"
)

// demoName is the DNS name the demo publishes its backends under, as
// _mysql._tcp.demo.qorb.test.
const demoName = "demo.qorb.test"

// demoTTL is the TTL, in seconds, of the demo's DNS records: the pool's
// resolver looks again this often.
const demoTTL = 1

// cluster is the demo's embedded service: MySQL-compatible servers in
// this process and the DNS server that publishes them.
type cluster struct {
	dns *dnstest.Server

	mu       sync.Mutex
	backends []*backend // in the order they started
}

// startCluster starts the DNS server and n backends, and publishes them.
func startCluster(n int) (*cluster, error) {
	// go-mysql-server logs every connection; the demo shows what matters
	// itself.
	logrus.SetOutput(io.Discard)
	dns, err := dnstest.Start()
	if err != nil {
		return nil, err
	}
	c := &cluster{dns: dns}
	for range n {
		if _, err := c.add(); err != nil {
			return nil, errors.Join(err, c.close())
		}
	}
	return c, nil
}

// add starts one more backend and publishes the set.
func (c *cluster) add() (*backend, error) {
	c.mu.Lock()
	name := "b" + strconv.Itoa(len(c.backends)+1)
	c.mu.Unlock()
	b, err := startBackend(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.backends = append(c.backends, b)
	c.publishLocked()
	c.mu.Unlock()
	return b, nil
}

// publishLocked sets the SRV record set to every backend started. A
// stopped backend stays listed: the pool has to find out it is dead.
func (c *cluster) publishLocked() {
	var recs []dnstest.SRV
	for _, b := range c.backends {
		host := b.name + "." + demoName
		c.dns.SetA(host, demoTTL, "127.0.0.1")
		recs = append(recs, dnstest.SRV{Target: host, Port: b.port, Weight: 1, TTL: demoTTL})
	}
	c.dns.SetSRV("_mysql._tcp."+demoName, recs...)
}

// all returns the backends, in the order they started.
func (c *cluster) all() []*backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*backend(nil), c.backends...)
}

// nameOf returns the name of the backend at addr, or "".
func (c *cluster) nameOf(addr string) string {
	for _, b := range c.all() {
		if b.addr == addr {
			return b.name
		}
	}
	return ""
}

// close stops every backend and the DNS server.
func (c *cluster) close() error {
	for _, b := range c.all() {
		b.stop()
	}
	return c.dns.Close()
}

// backend is one embedded MySQL-compatible server: an in-memory database
// "demo" with a one-row table "backend" that holds the server's name, so
// that "SELECT name FROM backend" says which backend answered.
type backend struct {
	name string
	addr string
	port uint16
	srv  *server.Server
	ln   *trackingListener
	wg   sync.WaitGroup // the server's accept loop

	stopOnce sync.Once
	forced   int
}

// startBackend starts a server on a free port of 127.0.0.1.
func startBackend(name string) (*backend, error) {
	db := memory.NewDatabase("demo")
	pro := memory.NewDBProvider(db)
	table := memory.NewTable(db, "backend", gmssql.NewPrimaryKeySchema(gmssql.Schema{
		{Name: "name", Type: types.Text, Nullable: false, Source: "backend"},
	}), db.GetForeignKeyCollection())
	db.AddTable("backend", table)
	ctx := gmssql.NewContext(context.Background(), gmssql.WithSession(memory.NewSession(gmssql.NewBaseSession(), pro)))
	if err := table.Insert(ctx, gmssql.NewRow(name)); err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	ln := &trackingListener{Listener: l, conns: map[*trackedConn]struct{}{}, empty: make(chan struct{})}
	cfg := server.Config{Protocol: "tcp", Address: l.Addr().String(), Listener: ln}
	srv, err := server.NewServer(cfg, sqle.NewDefault(pro), gmssql.NewContext, memory.NewSessionBuilder(pro), nil)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	addr := l.Addr().(*net.TCPAddr)
	b := &backend{name: name, addr: addr.String(), port: uint16(addr.Port), srv: srv, ln: ln}
	b.wg.Go(func() { _ = srv.Start() }) // returns when the listener closes
	return b, nil
}

// stop stops the server: it accepts no more connections, and each of
// those it has answers at most one more statement and closes (see
// trackingListener.closeAll). It returns how many connections it had to
// close without waiting for that. It may be called more than once.
func (b *backend) stop() int {
	b.stopOnce.Do(func() {
		_ = b.srv.Close()
		b.wg.Wait()
		b.forced = b.ln.closeAll(3 * time.Second)
	})
	return b.forced
}

// trackingListener remembers the connections it accepted, so that they
// can be closed when the server stops: go-mysql-server's Close only stops
// accepting.
type trackingListener struct {
	net.Listener

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	empty  chan struct{} // closed once closed is set and conns is empty
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll stops the connections as a server shutting down cleanly
// would: each answers the next statement it gets, if any, and then
// closes, so that no statement a client sends is left unanswered. It waits
// up to timeout for them all to close (the pool's health checks reach the
// idle ones within its check period), closes the rest, and returns how
// many those were.
func (l *trackingListener) closeAll(timeout time.Duration) int {
	l.mu.Lock()
	l.closed = true
	l.checkEmptyLocked()
	l.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.empty:
		return 0
	case <-t.C:
	}
	l.mu.Lock()
	rest := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		rest = append(rest, c)
	}
	l.mu.Unlock()
	for _, c := range rest {
		c.Close()
	}
	return len(rest)
}

func (l *trackingListener) stopping() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *trackingListener) checkEmptyLocked() {
	if l.closed && len(l.conns) == 0 {
		select {
		case <-l.empty:
		default:
			close(l.empty)
		}
	}
}

// trackedConn is a server-side connection that leaves its listener's set
// when closed.
type trackedConn struct {
	net.Conn
	l        *trackingListener
	once     sync.Once
	answered atomic.Bool // it got a statement after the server stopped
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.checkEmptyLocked()
		c.l.mu.Unlock()
	})
	return err
}

// Read reads what the client sends. Once the server stops, the first
// read that gets a statement lets it through, and the server's next read
// fails, after it has answered: the server then closes the connection.
func (c *trackedConn) Read(p []byte) (int, error) {
	stopping := c.l.stopping()
	if stopping && c.answered.Load() {
		// A statement the client sent already, while the server was
		// answering, still gets its answer.
		if n := c.pending(p); n > 0 {
			return n, nil
		}
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if n > 0 && (stopping || c.l.stopping()) {
		c.answered.Store(true)
	}
	return n, err
}

// pending reads what the client has sent already, without waiting.
func (c *trackedConn) pending(p []byte) int {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		n, _ = syscall.Read(int(fd), p)
		return true // never wait
	})
	return max(n, 0)
}
