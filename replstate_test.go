package qorb

import (
	"context"
	"database/sql/driver"
	"strconv"
	"testing"
	"time"

	"github.com/qorb-go/qorb/resolver"
)

// numReplicator compares positions written as decimal numbers.
type numReplicator struct{}

func (numReplicator) Position(context.Context, driver.Conn) (string, error) { return "", nil }
func (numReplicator) Reached(have, want string) (bool, error) {
	h, err := strconv.Atoi(have)
	if err != nil {
		return false, err
	}
	w, err := strconv.Atoi(want)
	return h >= w, err
}
func (numReplicator) ReadOnly(error) bool { return false }

func TestReplStateLag(t *testing.T) {
	r := newReplState(numReplicator{}, 0)
	p := resolver.Key{Addr: "127.0.0.1:1"}
	a := resolver.Key{Addr: "127.0.0.1:2"}
	b := resolver.Key{Addr: "127.0.0.1:3"}
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	r.observe(p, resolver.RolePrimary, "10", at(0))
	r.observe(a, resolver.RoleReplica, "10", at(0))
	r.observe(b, resolver.RoleReplica, "10", at(0))
	if l := r.lag(a, at(5)); l != 0 {
		t.Errorf("caught-up replica lags %v, want 0", l)
	}
	// The primary moves on; a replays, b does not.
	r.observe(p, resolver.RolePrimary, "20", at(10))
	r.observe(a, resolver.RoleReplica, "20", at(11))
	if l := r.lag(a, at(12)); l != 0 {
		t.Errorf("replica that replayed lags %v, want 0", l)
	}
	if l := r.lag(b, at(12)); l != 2*time.Second {
		t.Errorf("replica stuck at 10 lags %v at 12s, want 2s (behind since the primary reached 20 at 10s)", l)
	}
	r.observe(p, resolver.RolePrimary, "30", at(20))
	if l := r.lag(b, at(25)); l != 15*time.Second {
		t.Errorf("replica stuck at 10 lags %v at 25s, want 15s", l)
	}
	// b replays up to 20: behind only since the primary reached 30.
	r.observe(b, resolver.RoleReplica, "20", at(26))
	if l := r.lag(b, at(26)); l != 6*time.Second {
		t.Errorf("replica at 20 lags %v at 26s, want 6s", l)
	}
	// An idle primary makes no one lag.
	r.observe(p, resolver.RolePrimary, "30", at(40))
	r.observe(a, resolver.RoleReplica, "30", at(40))
	if l := r.lag(a, at(100)); l != 0 {
		t.Errorf("replica at the idle primary's position lags %v, want 0", l)
	}
	// Tokens.
	if !r.reached(a, "25") || r.reached(b, "25") {
		t.Errorf("reached(25): a %v b %v, want true false", r.reached(a, "25"), r.reached(b, "25"))
	}
	// A position that cannot be read: lagging without limit, past no token.
	r.forget(a, at(41))
	if l := r.lag(a, at(41)); l < time.Hour || r.reached(a, "1") {
		t.Errorf("backend of unknown position: lag %v, reached %v; want unbounded and false", l, r.reached(a, "1"))
	}
}

// TestReplStateLagFlags shows the lag flags claims read: a replica is
// flagged once its lag passes the limit, at the instant settle gives as
// the next crossing, and unflagged when a health check finds it caught
// up; each flip is reported once.
func TestReplStateLagFlags(t *testing.T) {
	const maxLag = 2 * time.Second
	r := newReplState(numReplicator{}, maxLag)
	p := resolver.Key{Addr: "127.0.0.1:1"}
	a := resolver.Key{Addr: "127.0.0.1:2"}
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	r.observe(p, resolver.RolePrimary, "10", at(0))
	if moved := r.observe(a, resolver.RoleReplica, "10", at(0)); moved {
		t.Errorf("observe of a caught-up replica = true, want false: nothing to settle")
	}
	if flipped, next := r.settle(at(0)); flipped || !next.IsZero() {
		t.Errorf("settle with no replica behind = %v, %v; want false, zero", flipped, next)
	}
	// The primary moves on at 1s: a is behind since then, and crosses
	// the limit just after 3s.
	if moved := r.observe(p, resolver.RolePrimary, "20", at(1000)); !moved {
		t.Errorf("observe that puts a replica behind = false, want true: the next crossing moved")
	}
	flipped, next := r.settle(at(1000))
	if want := at(3000).Add(1); flipped || !next.Equal(want) {
		t.Errorf("settle at 1s = %v, %v; want false, %v", flipped, next, want)
	}
	if r.lagging(a) {
		t.Error("replica behind for 0s flagged as lagging")
	}
	if flipped, _ := r.settle(at(3000)); flipped || r.lagging(a) {
		t.Errorf("at exactly the limit: flipped %v, lagging %v; want false, false", flipped, r.lagging(a))
	}
	flipped, next = r.settle(next)
	if !flipped || !next.IsZero() || !r.lagging(a) {
		t.Errorf("settle at the crossing = %v, %v, lagging %v; want true, zero, true", flipped, next, r.lagging(a))
	}
	if r.lagging(p) {
		t.Error("primary flagged as lagging")
	}
	if flipped, _ := r.settle(at(4000)); flipped {
		t.Error("settle reported the same flip twice")
	}
	// A health check finds a caught up: unflagged at once.
	if moved := r.observe(a, resolver.RoleReplica, "20", at(4500)); !moved || r.lagging(a) {
		t.Errorf("observe of a caught-up replica: moved %v, lagging %v; want true, false", moved, r.lagging(a))
	}
	if flipped, _ := r.settle(at(4500)); !flipped {
		t.Error("settle after the replica caught up = false, want the flip reported")
	}
	// A position that cannot be read: flagged at once.
	if moved := r.forget(a, at(5000)); !moved || !r.lagging(a) {
		t.Errorf("forget: moved %v, lagging %v; want true, true", moved, r.lagging(a))
	}
}

// TestReplStateNoLimit shows that without a lag limit no replica is ever
// flagged, and nothing needs settling.
func TestReplStateNoLimit(t *testing.T) {
	r := newReplState(numReplicator{}, 0)
	p := resolver.Key{Addr: "127.0.0.1:1"}
	a := resolver.Key{Addr: "127.0.0.1:2"}
	t0 := time.Unix(1000, 0)
	r.observe(a, resolver.RoleReplica, "10", t0)
	if moved := r.observe(p, resolver.RolePrimary, "20", t0); moved {
		t.Error("observe without a lag limit = true, want false")
	}
	if moved := r.forget(a, t0.Add(time.Hour)); moved || r.lagging(a) {
		t.Errorf("forget without a lag limit: moved %v, lagging %v; want false, false", moved, r.lagging(a))
	}
}
