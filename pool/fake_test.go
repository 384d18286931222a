package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// fakeConn is a connection made by fakeConnector.
type fakeConn struct {
	id      int64
	backend string
	// claimed is set while a test holds the connection, to catch a
	// connection handed out twice.
	claimed atomic.Bool
	closed  atomic.Bool
	broken  atomic.Bool // IsValid and OnRecycle fail
}

// backendMode is how a fake backend behaves.
type backendMode struct {
	connectErr error         // Connect fails with it
	hang       bool          // Connect, IsValid and OnRecycle block until ctx ends
	checkErr   error         // IsValid fails with it
	delay      time.Duration // Connect and IsValid take this long
}

// wait blocks as the mode says: until ctx ends if hanging, or for delay.
func (m backendMode) wait(ctx context.Context) error {
	if m.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if m.delay > 0 {
		t := time.NewTimer(m.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// fakeConnector opens fakeConns, behaving per backend as the test says.
type fakeConnector struct {
	mu      sync.Mutex
	modes   map[string]backendMode
	open    map[*fakeConn]bool
	maxOpen int // most connections open at once, probe connections included
	// limit, when positive, is a cap no connection attempt may take the
	// open connections past: the test moves it with the pool's caps.
	limit atomic.Int64
	errs  []error

	nextID   atomic.Int64
	connects atomic.Int64
	checks   atomic.Int64
	recycles atomic.Int64
	closes   atomic.Int64
}

func newFakeConnector() *fakeConnector {
	return &fakeConnector{modes: map[string]backendMode{}, open: map[*fakeConn]bool{}}
}

func (f *fakeConnector) setMode(addr string, m backendMode) {
	f.mu.Lock()
	f.modes[addr] = m
	f.mu.Unlock()
}

func (f *fakeConnector) mode(addr string) backendMode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.modes[addr]
}

func (f *fakeConnector) Connect(ctx context.Context, b resolver.Backend) (*fakeConn, error) {
	f.connects.Add(1)
	m := f.mode(b.Addr)
	if err := m.wait(ctx); err != nil {
		return nil, err
	}
	if m.connectErr != nil {
		return nil, m.connectErr
	}
	c := &fakeConn{id: f.nextID.Add(1), backend: b.Addr}
	f.mu.Lock()
	f.open[c] = true
	n := len(f.open)
	f.maxOpen = max(f.maxOpen, n)
	f.mu.Unlock()
	if limit := f.limit.Load(); limit > 0 && int64(n) > limit {
		f.fail(fmt.Errorf("connection %d opened with %d open, cap %d", c.id, n, limit))
	}
	return c, nil
}

func (f *fakeConnector) IsValid(ctx context.Context, c *fakeConn) error {
	f.checks.Add(1)
	m := f.mode(c.backend)
	if err := m.wait(ctx); err != nil {
		return err
	}
	if c.broken.Load() {
		return errors.New("fake: connection broken")
	}
	return m.checkErr
}

func (f *fakeConnector) OnRecycle(ctx context.Context, c *fakeConn) error {
	f.recycles.Add(1)
	if c.broken.Load() {
		return errors.New("fake: connection broken")
	}
	return nil
}

func (f *fakeConnector) Close(c *fakeConn) error {
	f.closes.Add(1)
	if c.closed.Swap(true) {
		f.fail(fmt.Errorf("connection %d closed twice", c.id))
	}
	f.mu.Lock()
	delete(f.open, c)
	f.mu.Unlock()
	return nil
}

func (f *fakeConnector) fail(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

// openConns returns the number of connections open now.
func (f *fakeConnector) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// peakOpen returns the most connections that were open at once.
func (f *fakeConnector) peakOpen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxOpen
}

// openTo counts the open connections to one backend.
func (f *fakeConnector) openTo(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for c := range f.open {
		if c.backend == addr {
			n++
		}
	}
	return n
}

// check fails the test for any misuse the connector saw.
func (f *fakeConnector) check(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.errs {
		t.Error(err)
	}
}

// fakeResolver reports the sets a test pushes.
type fakeResolver struct {
	ch chan []resolver.Backend
}

func newFakeResolver() *fakeResolver { return &fakeResolver{ch: make(chan []resolver.Backend)} }

func (r *fakeResolver) Run(ctx context.Context, rc resolver.Receiver) error {
	for {
		select {
		case bs := <-r.ch:
			rc.Update(bs)
			rc.Report(nil)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// set reports bs; it returns once the resolver has taken them.
func (r *fakeResolver) set(bs ...resolver.Backend) { r.ch <- bs }

// backends returns n backends 127.0.0.1:10001, 10002, ... of weight 1.
func backends(n int) []resolver.Backend {
	bs := make([]resolver.Backend, n)
	for i := range bs {
		bs[i] = resolver.Backend{Host: "127.0.0.1", Addr: fmt.Sprintf("127.0.0.1:%d", 10001+i), Weight: 1}
	}
	return bs
}

// claimFrom claims and marks the connection claimed, failing on a double
// hand-out.
func claimFrom(t testing.TB, p *Pool[*fakeConn], ctx context.Context) Claim[*fakeConn] {
	t.Helper()
	c, err := p.Claim(ctx)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if c.Conn().claimed.Swap(true) {
		t.Fatalf("connection %d handed out twice", c.Conn().id)
	}
	if c.Conn().closed.Load() {
		t.Fatalf("connection %d handed out after it was closed", c.Conn().id)
	}
	return c
}

func release(c Claim[*fakeConn]) {
	c.Conn().claimed.Store(false)
	c.Release()
}

// recycleMode is RecycleInline when inline, else RecycleBackground.
func recycleMode(inline bool) RecycleMode {
	if inline {
		return RecycleInline
	}
	return RecycleBackground
}
