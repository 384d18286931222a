package qorb

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// router decides which backends an operation may use: the role its
// context asks for or the connector's default, the write token it
// carries, and how far each replica lags. It is the only root code that
// learns what a backend is: it answers the pool's role queries, and reads
// what failed operations say (a read-only server). It owns the
// replication state the health checks feed.
//
// Names keep the two kinds of role apart: asked is the [Role] an
// operation requests, is is the [resolver.Role] a server has.
type router struct {
	pool   *pool.Pool[*physConn] // set by start, before any claim
	opener Opener
	def    Role // asked when the context names no role
	// repl follows replication positions; nil unless the Opener is a
	// Replicator.
	repl *replState
	// The claim filters for each role, made once so claims do not
	// allocate. A backend whose role nobody knows (yet, or because its
	// server cannot say) may serve any role; knownPrimary takes only
	// backends known to be the primary, which writes prefer.
	primary, replica, knownPrimary pool.Filter

	// The lag watch, which runs only with a lag limit: wake asks it to
	// look at the lag flags again (capacity 1), closing stop ends it, and
	// done is closed when it has.
	wake, stop, done chan struct{}
}

// maxPositionProbes bounds the replicas a read with a write token asks
// for their position before it settles for the primary.
const maxPositionProbes = 8

// newRouter returns the router for connections opened by o; maxLag is
// pool_max_lag, zero for no limit.
func newRouter(o Opener, def Role, maxLag time.Duration) *router {
	r := &router{opener: o, def: def}
	r.primary = func(b resolver.Backend) bool { return b.Role != resolver.RoleReplica }
	r.knownPrimary = func(b resolver.Backend) bool { return b.Role == resolver.RolePrimary }
	r.replica = func(b resolver.Backend) bool { return b.Role != resolver.RolePrimary }
	rep, ok := o.(Replicator)
	if !ok {
		return r
	}
	r.repl = newReplState(rep, maxLag)
	if maxLag > 0 {
		repl := r.repl
		r.replica = func(b resolver.Backend) bool {
			return b.Role != resolver.RolePrimary && !repl.lagging(b.Key())
		}
		r.wake = make(chan struct{}, 1)
	}
	return r
}

// limitsLag reports whether the router keeps lagging replicas out of
// reads: the Opener is a Replicator and pool_max_lag is set.
func (r *router) limitsLag() bool { return r.wake != nil }

// start gives the router the pool it claims from, and starts the lag
// watch if there is a lag limit. Stop it with close.
func (r *router) start(p *pool.Pool[*physConn]) {
	r.pool = p
	if !r.limitsLag() {
		return
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go r.watchLag()
}

// close stops the lag watch and waits for it to end.
func (r *router) close() {
	if r.stop == nil {
		return
	}
	close(r.stop)
	<-r.done
}

// watchLag tells the pool each time a replica crosses the lag limit,
// either way, so that queued claims are offered connections again: when a
// health check finds the replica behind or caught up, and, between health
// checks, at the instant its lag passes the limit.
func (r *router) watchLag() {
	defer close(r.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-r.wake:
		case <-t.C:
		}
		flipped, next := r.repl.settle(time.Now())
		if flipped {
			r.pool.FiltersChanged()
		}
		if next.IsZero() {
			t.Stop()
		} else {
			t.Reset(time.Until(next))
		}
	}
}

// poke asks the lag watch to look at the lag flags again.
func (r *router) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// claim claims a connection for the operation ctx belongs to: of the role
// ctx asks for (or the connector's default), and past the write token ctx
// carries, if any.
func (r *router) claim(ctx context.Context) (pool.Claim[*physConn], error) {
	asked := roleFrom(ctx, r.def)
	var (
		cl  pool.Claim[*physConn]
		err error
	)
	if tok, ok := tokenFrom(ctx); ok && r.repl != nil && asked != RolePrimary {
		cl, err = r.claimAfter(ctx, asked, tok)
	} else {
		f := r.filter(asked)
		if asked == RolePreferReplica && !r.pool.Usable(f) {
			f = r.primaryFilter() // no replica is online: the primary serves
		}
		cl, err = r.pool.ClaimFiltered(ctx, f)
	}
	if err != nil && asked != RoleAny {
		return cl, fmt.Errorf("qorb: no %s backend: %w", asked, err)
	}
	return cl, err
}

// filter returns the pool filter for role asked: nil for any backend. A
// replica further behind than pool_max_lag serves no replica reads.
func (r *router) filter(asked Role) pool.Filter {
	switch asked {
	case RolePrimary:
		return r.primaryFilter()
	case RoleReplica, RolePreferReplica:
		return r.replica
	}
	return nil
}

// primaryFilter returns the filter of primary claims: the backends known
// to be the primary while one of them is usable, so that a server that
// cannot say its role gets no writes beside a known primary; else every
// backend not known to be a replica.
func (r *router) primaryFilter() pool.Filter {
	if r.pool.Usable(r.knownPrimary) {
		return r.knownPrimary
	}
	return r.primary
}

// claimAfter claims a connection for a read that must see the writes tok
// covers: from a backend of role asked whose position, as last seen, is
// past tok; else from one whose position, asked now, is; else, whatever
// the role, from the primary, which has every write.
func (r *router) claimAfter(ctx context.Context, asked Role, tok Token) (pool.Claim[*physConn], error) {
	want := string(tok)
	base := r.filter(asked)
	if asked == RoleAny || asked == RolePreferReplica {
		base = nil // the primary has reached every token
	}
	allowed := func(b resolver.Backend) bool { return base == nil || base(b) }
	past := func(b resolver.Backend) bool {
		return allowed(b) && (b.Role == resolver.RolePrimary || r.repl.reached(b.Key(), want))
	}
	if cl, ok := r.pool.TryClaimFiltered(ctx, past); ok {
		return cl, nil
	}
	// Positions may be stale: ask the candidates themselves, each once.
	var tried []resolver.Key
	untried := func(b resolver.Backend) bool {
		return allowed(b) && b.Role != resolver.RolePrimary && !slices.Contains(tried, b.Key())
	}
	for range maxPositionProbes {
		cl, ok := r.pool.TryClaimFiltered(ctx, untried)
		if !ok {
			break
		}
		pc := cl.Conn()
		pos, err := r.repl.rep.Position(ctx, pc.dc)
		if err == nil {
			if ok, _ := r.repl.rep.Reached(pos, want); ok {
				return cl, nil
			}
		}
		cl.Release()
		tried = append(tried, pc.key)
	}
	// No replica has replayed that far: the primary has.
	return r.pool.ClaimFiltered(ctx, r.primaryFilter())
}

// observe asks the server of pc its role and, for a database that
// replicates, its position. The pool calls it, as its role reporter,
// after each connect and passed health check.
func (r *router) observe(ctx context.Context, pc *physConn) (resolver.Role, error) {
	is, err := r.opener.Role(ctx, pc.dc)
	if err != nil || r.repl == nil {
		return is, err
	}
	pos, err := r.repl.rep.Position(ctx, pc.dc)
	var moved bool
	if err != nil {
		// The backend still answers: only its position is unknown, so it
		// counts as lagging and past no token, but stays online.
		moved = r.repl.forget(pc.key, time.Now())
	} else {
		moved = r.repl.observe(pc.key, is, pos, time.Now())
	}
	if moved && r.limitsLag() {
		r.poke()
	}
	return is, nil
}

// failed learns from err, which an operation on pc failed with: a server
// that refuses a write as read-only is a replica now, whatever the pool
// thought. The pool records that at once, so writes stop going there, and
// checks the backend's idle connections again, asking their role.
func (r *router) failed(pc *physConn, err error) {
	if r.repl != nil && r.repl.rep.ReadOnly(err) {
		r.pool.SetRole(pc.key, resolver.RoleReplica)
		r.pool.Recheck(pc.key)
	}
}
