package fleetsim

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// Mode is how a fake backend behaves.
type Mode uint8

// The backend modes.
const (
	// Up: connections open after the connect latency and work.
	Up Mode = iota
	// Refusing: new connections are refused; open ones keep working.
	Refusing
	// Restarting: open connections fail at their next use and new ones
	// are refused. Connections opened after the restart work again.
	Restarting
	// Blackholed: nothing answers. Connection attempts, checks and
	// queries hang until their context ends or the blackhole is lifted.
	Blackholed
)

var modeNames = [...]string{Up: "up", Refusing: "refusing", Restarting: "restarting", Blackholed: "blackholed"}

// String returns the mode's name.
func (m Mode) String() string { return modeNames[m] }

// Latencies of the fake backends: each draw is uniform in [lo, hi].
var (
	connectLatency = [2]time.Duration{12 * time.Millisecond, 15 * time.Millisecond}
	refuseLatency  = [2]time.Duration{500 * time.Microsecond, 1 * time.Millisecond}
	checkLatency   = [2]time.Duration{1 * time.Millisecond, 2 * time.Millisecond}
	recycleLatency = [2]time.Duration{500 * time.Microsecond, 1 * time.Millisecond}
)

var (
	errRefused = errors.New("fleetsim: connection refused")
	errReset   = errors.New("fleetsim: connection reset by peer")
)

// backendState is a backend's mode as of one change. It is replaced, never
// changed, so a reader holding one sees a consistent mode.
type backendState struct {
	mode Mode
	// gen counts restarts: a connection opened under an older
	// generation fails.
	gen uint64
	// lifted is closed when the mode changes.
	lifted chan struct{}
}

// backend is one fake database server. It counts, per second of the
// simulation, what it sees.
type backend struct {
	b     resolver.Backend
	idx   int
	state atomic.Pointer[backendState]
	mu    sync.Mutex // serializes mode changes

	open         atomic.Int64 // connections open now
	inflight     atomic.Int64 // queries running now
	offlinePools atomic.Int64 // pools that declared it offline
	// faultClaim is when it last served a claim while blackholed (time
	// since the start), and faultClaims how many it served so.
	faultClaim, faultClaims atomic.Int64

	attempts, opened, closed, claims series
	conns, offline, busy             series // sampled at each second
}

func newBackend(idx int, seconds int) *backend {
	host := string(rune('a' + idx))
	b := &backend{
		b:   resolver.Backend{Host: host + ".db.test", Addr: "10.0.0." + string(rune('1'+idx)) + ":5432", Weight: 1},
		idx: idx,
	}
	b.state.Store(&backendState{mode: Up, lifted: make(chan struct{})})
	for _, s := range []*series{&b.attempts, &b.opened, &b.closed, &b.claims, &b.conns, &b.offline, &b.busy} {
		*s = newSeries(seconds)
	}
	return b
}

// name returns the backend's one-letter name.
func (b *backend) name() string { return b.b.Host[:1] }

// setMode switches the backend to m. Restarting breaks every connection
// open now.
func (b *backend) setMode(m Mode) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.state.Load()
	next := &backendState{mode: m, gen: old.gen, lifted: make(chan struct{})}
	if m == Restarting {
		next.gen++
	}
	b.state.Store(next)
	close(old.lifted)
}

// tick is the grain of the fakes' clock: every wait of theirs ends on a
// multiple of it, so that many goroutines wake at each instant of virtual
// time instead of one. That costs the simulation far fewer steps of the
// bubble's clock.
const tick = time.Millisecond

// until returns how long to wait for d to pass, rounded up to the end of
// a tick.
func until(d time.Duration) time.Duration {
	now := time.Now()
	return now.Add(d).Truncate(tick).Add(tick).Sub(now)
}

// wait blocks for d (see until), or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(until(d))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The first retransmission timeouts of TCP: of a connection request, and
// of data on an open connection (Linux's minimum). Each next timeout
// doubles.
const (
	synRTO  = time.Second
	dataRTO = 200 * time.Millisecond
)

// hang waits while the backend is blackholed, as of st, for a request
// first sent at start: until ctx ends, or until the retransmission that
// follows the blackhole's end gets through. It returns the state then.
func (b *backend) hang(ctx context.Context, st *backendState, start time.Time, rto time.Duration) (*backendState, error) {
	for st.mode == Blackholed {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-st.lifted:
		}
		if err := wait(ctx, nextRetransmit(time.Since(start), rto)); err != nil {
			return nil, err
		}
		st = b.state.Load()
	}
	return st, nil
}

// nextRetransmit returns how long after elapsed the next retransmission
// of a request is sent: at rto, 3 rto, 7 rto... after the first sending.
func nextRetransmit(elapsed, rto time.Duration) time.Duration {
	at := rto
	for at < elapsed {
		rto *= 2
		at += rto
	}
	return at - elapsed
}

// serve runs one request that takes d on a connection of generation gen:
// a check, a recycle or a query. It hangs while the backend is
// blackholed and fails on a connection from before a restart.
func (b *backend) serve(ctx context.Context, gen uint64, d time.Duration) error {
	start := time.Now()
	st, err := b.hang(ctx, b.state.Load(), start, dataRTO)
	if err != nil {
		return err
	}
	if st.gen != gen {
		return errReset
	}
	if err := wait(ctx, d); err != nil {
		return err
	}
	// The answer is lost if the blackhole began meanwhile.
	if st, err = b.hang(ctx, b.state.Load(), start, dataRTO); err != nil {
		return err
	}
	if st.gen != gen {
		return errReset
	}
	return nil
}

// conn is a connection to a fake backend.
type conn struct {
	b   *backend
	gen uint64
	// use says who holds the connection, to catch it being handed out
	// twice or used after it was closed.
	use atomic.Int32
}

// The values of conn.use.
const (
	connFree int32 = iota
	connClaimed
	connPool // the pool is checking or recycling it
	connClosed
)

// connector is one pool's [pool.Connector]. It counts the pool's slots as
// the backends see them (connections open or being opened, until Close is
// called on them) and checks them against the policy's caps.
type connector struct {
	f *Fleet

	mu       sync.Mutex
	rng      *rand.Rand
	total    int
	per      []int
	maxTotal int
	maxPer   int
}

func newConnector(f *Fleet, seed uint64) *connector {
	return &connector{f: f, rng: rand.New(rand.NewPCG(f.cfg.Seed, seed)), per: make([]int, len(f.backends))}
}

// draw returns a latency drawn from r.
func (c *connector) draw(r [2]time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return r[0] + time.Duration(c.rng.Int64N(int64(r[1]-r[0])+1))
}

// slot counts one more (n = 1) or one fewer (n = -1) connection to b and
// records a broken cap.
func (c *connector) slot(b *backend, n int) {
	c.mu.Lock()
	c.total += n
	c.per[b.idx] += n
	over := n > 0 && (c.total > c.f.maxSlots || c.per[b.idx] > c.f.maxPerBackend)
	c.maxTotal = max(c.maxTotal, c.total)
	c.maxPer = max(c.maxPer, c.per[b.idx])
	c.mu.Unlock()
	if over {
		c.f.violations.capExceeded.Add(1)
	}
}

// Connect opens a connection to rb.
func (c *connector) Connect(ctx context.Context, rb resolver.Backend) (*conn, error) {
	b := c.f.backendAt(rb.Addr)
	if b == nil {
		return nil, errRefused
	}
	c.slot(b, 1)
	b.attempts.add(c.f.second(), 1)
	st, err := b.hang(ctx, b.state.Load(), time.Now(), synRTO)
	if err != nil {
		c.slot(b, -1)
		return nil, err
	}
	if st.mode == Refusing || st.mode == Restarting {
		err = wait(ctx, c.draw(refuseLatency))
		if err == nil {
			err = errRefused
		}
	} else if err = wait(ctx, c.draw(connectLatency)); err == nil && b.state.Load().gen != st.gen {
		err = errReset // restarted while connecting
	}
	if err != nil {
		c.slot(b, -1)
		return nil, err
	}
	b.open.Add(1)
	b.opened.add(c.f.second(), 1)
	return &conn{b: b, gen: st.gen}, nil
}

// poolOp runs a check or recycle that takes latency r on cn.
func (c *connector) poolOp(ctx context.Context, cn *conn, r [2]time.Duration) error {
	if !cn.use.CompareAndSwap(connFree, connPool) {
		c.f.violations.doubled.Add(1)
		return errors.New("fleetsim: connection in use")
	}
	err := cn.b.serve(ctx, cn.gen, c.draw(r))
	cn.use.CompareAndSwap(connPool, connFree)
	return err
}

// IsValid checks cn.
func (c *connector) IsValid(ctx context.Context, cn *conn) error {
	return c.poolOp(ctx, cn, checkLatency)
}

// OnRecycle cleans cn after a claim.
func (c *connector) OnRecycle(ctx context.Context, cn *conn) error {
	return c.poolOp(ctx, cn, recycleLatency)
}

// Close closes cn.
func (c *connector) Close(cn *conn) error {
	if old := cn.use.Swap(connClosed); old != connFree {
		c.f.violations.doubled.Add(1) // closed twice, or while in use
		if old == connClosed {
			return nil
		}
	}
	cn.b.open.Add(-1)
	cn.b.closed.add(c.f.second(), 1)
	c.slot(cn.b, -1)
	return nil
}

var _ pool.Connector[*conn] = (*connector)(nil)
