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
	r := &replState{rep: numReplicator{}}
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
	r.forget(a)
	if l := r.lag(a, at(41)); l < time.Hour || r.reached(a, "1") {
		t.Errorf("backend of unknown position: lag %v, reached %v; want unbounded and false", l, r.reached(a, "1"))
	}
}
