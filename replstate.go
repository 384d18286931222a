package qorb

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// replState follows the replication positions the health checks read, to
// tell whether each replica lags too far behind and whether it has
// replayed past a write token. Only the router uses it.
//
// Lag is measured against the primary's own history: each time a health
// check reads the primary's position, a sample (time, position) is kept
// when the position moved. A replica is behind since the oldest sample
// whose position it has not reached, so its lag is the time since then;
// a replica that has reached every sample does not lag. Lag is thus
// measured to within a health-check interval, and an idle primary (no
// new writes) never makes a replica lag.
//
// Health checks write under mu; claims read only view, a snapshot that is
// replaced whole and never changed, so a claim's filter costs an atomic
// load, and a map lookup only while some backend lags or for a token. A
// backend's lag flag in the snapshot changes when a health check reads
// it, and, between checks, when settle finds that its lag has passed the
// limit: the router's lag watch calls settle at that instant.
type replState struct {
	rep    Replicator
	maxLag time.Duration // zero: no backend is ever flagged as lagging

	mu       sync.Mutex // protects the fields below
	samples  []posSample
	backends map[resolver.Key]*replInfo
	// flipped says that some lag flag changed since settle last ran.
	flipped bool
	// next is when the next backend will cross the lag limit, if nothing
	// is read meanwhile; zero for never.
	next time.Time

	view atomic.Pointer[replView]
}

type posSample struct {
	at  time.Time
	pos string
}

// replInfo is what the health checks last said of one backend.
type replInfo struct {
	role  resolver.Role
	pos   string
	known bool // pos was read; false after forget
	// behindSince is when the primary was at a position this replica has
	// not reached, or zero when it has reached them all.
	behindSince time.Time
	lagging     bool // as published in the view
}

// replView is what claims read of the replication state.
type replView struct {
	backends map[resolver.Key]replSeen
	lagging  int // backends flagged as lagging
}

// replSeen is what claims read of one backend.
type replSeen struct {
	pos     string
	known   bool
	lagging bool
}

// maxSamples bounds the primary's history.
const maxSamples = 1024

// newReplState follows positions through rep; replicas further behind
// than maxLag are flagged as lagging, none if it is zero.
func newReplState(rep Replicator, maxLag time.Duration) *replState {
	r := &replState{rep: rep, maxLag: maxLag, backends: make(map[resolver.Key]*replInfo)}
	r.view.Store(&replView{})
	return r
}

// infoLocked returns what is known of backend k, adding it if need be.
func (r *replState) infoLocked(k resolver.Key) *replInfo {
	in := r.backends[k]
	if in == nil {
		in = &replInfo{}
		r.backends[k] = in
	}
	return in
}

// observe records what a health check read of backend k at now. It
// reports whether a lag flag flipped or the next crossing of the lag
// limit moved, which settle then picks up.
func (r *replState) observe(k resolver.Key, role resolver.Role, pos string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.infoLocked(k)
	in.pos, in.known, in.role = pos, true, role
	switch role {
	case resolver.RolePrimary:
		in.behindSince = time.Time{}
		if n := len(r.samples); n > 0 && r.samples[n-1].pos == pos {
			break
		}
		if len(r.samples) == maxSamples {
			copy(r.samples, r.samples[1:])
			r.samples = r.samples[:maxSamples-1]
		}
		r.samples = append(r.samples, posSample{at: now, pos: pos})
		// Replicas that had caught up are behind from now on, unless they
		// are already past this position.
		for _, ri := range r.backends {
			if ri.role != resolver.RoleReplica || !ri.behindSince.IsZero() || !ri.known {
				continue
			}
			if ok, err := r.rep.Reached(ri.pos, pos); err == nil && !ok {
				ri.behindSince = now
			}
		}
	case resolver.RoleReplica:
		in.behindSince = time.Time{}
		for _, s := range r.samples {
			if ok, err := r.rep.Reached(pos, s.pos); err == nil && !ok {
				in.behindSince = s.at
				break
			}
		}
	}
	return r.publishLocked(now)
}

// forget records that backend k's position could not be read at now: it
// lags without limit and is past no token until it is read again. It
// reports what observe does.
func (r *replState) forget(k resolver.Key, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.infoLocked(k)
	in.pos, in.known = "", false
	return r.publishLocked(now)
}

// settle updates the lag flags for the time now, and returns whether some
// flag flipped since it last ran, and when the next backend will cross
// the lag limit (zero for never), at which point it should run again.
func (r *replState) settle(now time.Time) (flipped bool, next time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.publishLocked(now)
	flipped, r.flipped = r.flipped, false
	return flipped, r.next
}

// publishLocked recomputes the lag flags for the time now and publishes a
// new view. It reports whether a flag flipped or the next crossing moved.
func (r *replState) publishLocked(now time.Time) bool {
	v := &replView{backends: make(map[resolver.Key]replSeen, len(r.backends))}
	var next time.Time
	flipped := false
	for k, in := range r.backends {
		lagging := r.maxLag > 0 && lagOf(in, now) > r.maxLag
		if lagging != in.lagging {
			in.lagging, flipped = lagging, true
		}
		if lagging {
			v.lagging++
		} else if r.maxLag > 0 && in.known && !in.behindSince.IsZero() {
			// It lags once more than maxLag has passed since then.
			at := in.behindSince.Add(r.maxLag + 1)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		v.backends[k] = replSeen{pos: in.pos, known: in.known, lagging: lagging}
	}
	r.view.Store(v)
	moved := !next.Equal(r.next)
	r.next = next
	r.flipped = r.flipped || flipped
	return flipped || moved
}

// lagOf returns how far the backend in describes is behind its primary,
// as of now.
func lagOf(in *replInfo, now time.Time) time.Duration {
	switch {
	case !in.known:
		return math.MaxInt64
	case in.behindSince.IsZero():
		return 0
	default:
		return now.Sub(in.behindSince)
	}
}

// lag returns how far backend k is behind its primary, as of now.
func (r *replState) lag(k resolver.Key, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.backends[k]
	if in == nil {
		return 0
	}
	return lagOf(in, now)
}

// lagging reports whether backend k lags further behind than the limit,
// as of the last health check or settle. It is a claim filter's test.
func (r *replState) lagging(k resolver.Key) bool {
	v := r.view.Load()
	return v.lagging > 0 && v.backends[k].lagging
}

// reached reports whether backend k was last seen at or past want.
func (r *replState) reached(k resolver.Key, want string) bool {
	s, ok := r.view.Load().backends[k]
	if !ok || !s.known {
		return false
	}
	ok, err := r.rep.Reached(s.pos, want)
	return err == nil && ok
}
