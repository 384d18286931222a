package qorb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/qorb-go/qorb/resolver"
)

// ErrStalled is wrapped by the error of an operation cut short because
// its backend stopped answering (see pool_stall_timeout): the operation
// may or may not have reached the server. A read that is safe to repeat
// ([Repeatable], or a replica role) is not failed with it but run again
// on another backend.
var ErrStalled = errors.New("qorb: backend stalled")

// A SocketOpener is an optional interface for an [Opener] whose driver
// dials through a hook it can set. ConnectSockets is Connect, except that
// it calls opened with each network connection the driver dials while
// connecting, before the driver uses it. qorb keeps those to close them
// when the backend stalls: it stops answering its probes while
// operations are in flight on it, which then fail at once instead of at
// their deadline. The dialect packages' Openers implement it.
type SocketOpener interface {
	ConnectSockets(ctx context.Context, b resolver.Backend, opened func(net.Conn)) (driver.Conn, error)
}

// sockets holds the network connections dialed for one physical
// connection, to close them from another goroutine.
type sockets struct {
	mu     sync.Mutex
	conns  []net.Conn
	sealed bool // connected: later dials (a cancel request) are not its own
	cut    bool
}

// opened records c, dialed while connecting; it closes c at once if the
// connection was cut meanwhile.
func (s *sockets) opened(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.cut:
		c.Close()
	case !s.sealed:
		s.conns = append(s.conns, c)
	}
}

// seal stops recording: the connection is set up.
func (s *sockets) seal() {
	s.mu.Lock()
	s.sealed = true
	s.mu.Unlock()
}

// cutAll closes every socket recorded: the driver's reads and writes on
// them fail at once.
func (s *sockets) cutAll() {
	s.mu.Lock()
	s.cut = true
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// connect opens a physical connection through o, recording its sockets
// when o lets it.
func connect(ctx context.Context, o Opener, b resolver.Backend) (*physConn, error) {
	so, ok := o.(SocketOpener)
	if !ok {
		dc, err := o.Connect(ctx, b)
		if err != nil {
			return nil, err
		}
		return &physConn{dc: dc, key: b.Key()}, nil
	}
	s := &sockets{}
	dc, err := so.ConnectSockets(ctx, b, s.opened)
	s.seal()
	if err != nil {
		return nil, err
	}
	return &physConn{dc: dc, key: b.Key(), socks: s}, nil
}

// Abort closes the sockets of pc, claimed on a backend that stalled, so
// that the operation in flight on it fails at once; the operation then
// reports ErrStalled (see conn.check).
func (oc openerConnector) Abort(pc *physConn) {
	pc.cut.Store(true)
	if pc.socks != nil {
		pc.socks.cutAll()
	}
}

// stalledErr returns err, which an operation on pc failed with after pc
// was cut, wrapped with ErrStalled.
func stalledErr(pc *physConn, err error) error {
	return fmt.Errorf("%w: %s stopped answering: %w", ErrStalled, pc.key, err)
}
