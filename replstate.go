package qorb

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// replState follows the replication positions the health checks read, to
// tell how far each replica lags and whether it has replayed past a
// write token.
//
// Lag is measured against the primary's own history: each time a health
// check reads the primary's position, a sample (time, position) is kept
// when the position moved. A replica is behind since the oldest sample
// whose position it has not reached, so its lag is the time since then;
// a replica that has reached every sample does not lag. Lag is thus
// measured to within a health-check interval, and an idle primary (no
// new writes) never makes a replica lag.
type replState struct {
	rep Replicator

	mu      sync.Mutex // protects samples and the replicas' recomputation
	samples []posSample

	backends sync.Map // resolver.Key → *replInfo
}

type posSample struct {
	at  int64 // unix nanoseconds
	pos string
}

// replInfo is what the health checks last said of one backend.
type replInfo struct {
	role resolver.Role
	pos  atomic.Pointer[string]
	// behindSince is when the primary was at a position this replica has
	// not reached (unix nanoseconds), or 0 when it has reached them all.
	behindSince atomic.Int64
}

// maxSamples bounds the primary's history.
const maxSamples = 1024

func (r *replState) info(k resolver.Key) *replInfo {
	if v, ok := r.backends.Load(k); ok {
		return v.(*replInfo)
	}
	v, _ := r.backends.LoadOrStore(k, &replInfo{})
	return v.(*replInfo)
}

// observe records what a health check read of backend k.
func (r *replState) observe(k resolver.Key, role resolver.Role, pos string, now time.Time) {
	in := r.info(k)
	in.pos.Store(&pos)
	r.mu.Lock()
	defer r.mu.Unlock()
	in.role = role
	switch role {
	case resolver.RolePrimary:
		in.behindSince.Store(0)
		if n := len(r.samples); n > 0 && r.samples[n-1].pos == pos {
			return
		}
		if len(r.samples) == maxSamples {
			copy(r.samples, r.samples[1:])
			r.samples = r.samples[:maxSamples-1]
		}
		r.samples = append(r.samples, posSample{at: now.UnixNano(), pos: pos})
		// Replicas that had caught up are behind from now on, unless they
		// are already past this position.
		r.backends.Range(func(_, v any) bool {
			ri := v.(*replInfo)
			if ri.role != resolver.RoleReplica || ri.behindSince.Load() != 0 {
				return true
			}
			if p := ri.pos.Load(); p != nil {
				if ok, err := r.rep.Reached(*p, pos); err == nil && !ok {
					ri.behindSince.Store(now.UnixNano())
				}
			}
			return true
		})
	case resolver.RoleReplica:
		since := int64(0)
		for _, s := range r.samples {
			if ok, err := r.rep.Reached(pos, s.pos); err == nil && !ok {
				since = s.at
				break
			}
		}
		in.behindSince.Store(since)
	}
}

// forget records that backend k's position could not be read.
func (r *replState) forget(k resolver.Key) {
	in := r.info(k)
	in.pos.Store(nil)
	in.behindSince.Store(unknownSince)
}

// unknownSince marks a backend whose position is unknown: it lags without
// limit.
const unknownSince = 1

// lag returns how far backend k is behind its primary, as of now.
func (r *replState) lag(k resolver.Key, now time.Time) time.Duration {
	v, ok := r.backends.Load(k)
	if !ok {
		return 0
	}
	switch since := v.(*replInfo).behindSince.Load(); since {
	case 0:
		return 0
	case unknownSince:
		return math.MaxInt64
	default:
		return now.Sub(time.Unix(0, since))
	}
}

// reached reports whether backend k was last seen at or past want.
func (r *replState) reached(k resolver.Key, want string) bool {
	v, ok := r.backends.Load(k)
	if !ok {
		return false
	}
	p := v.(*replInfo).pos.Load()
	if p == nil {
		return false
	}
	ok, err := r.rep.Reached(*p, want)
	return err == nil && ok
}
