package pool

import (
	"math/rand/v2"
	"time"
)

// This file holds what keeps a fleet of pools gentle with a backend that
// is not known to be healthy: the connect-rate limit (Policy.ConnectRate)
// and slow start (Policy.SlowStart).

// connectBucket is a token bucket that paces a set's connection attempts
// while the set is limited (see set.limitedLocked). Guarded by set.mu.
type connectBucket struct {
	tokens float64
	at     int64 // when tokens was last brought up to date, on the pool's clock
	primed bool  // tokens has been filled once
}

// take reports whether an attempt may start at mnow, taking cost tokens
// if so; if not, it returns when the bucket next holds a whole token. rate
// is in tokens per second. A cost drawn at random about 1 spaces the
// attempts at random about the rate's period, with the rate kept on
// average.
func (b *connectBucket) take(mnow int64, rate float64, burst int, cost float64) (ok bool, next int64) {
	if !b.primed {
		b.tokens, b.at, b.primed = float64(burst), mnow, true
	}
	if mnow > b.at {
		b.tokens = min(float64(burst), b.tokens+rate*time.Duration(mnow-b.at).Seconds())
		b.at = mnow
	}
	if b.tokens >= 1 {
		b.tokens -= cost
		return true, 0
	}
	return false, b.at + int64((1-b.tokens)/rate*float64(time.Second)) + 1
}

// ready reports whether take would let an attempt start at mnow, without
// taking anything; if not, it returns when it would.
func (b *connectBucket) ready(mnow int64, rate float64, burst int) (ok bool, next int64) {
	if !b.primed {
		return burst >= 1, 0
	}
	tokens := min(float64(burst), b.tokens+rate*time.Duration(max(mnow-b.at, 0)).Seconds())
	if tokens >= 1 {
		return true, 0
	}
	return false, mnow + int64((1-tokens)/rate*float64(time.Second)) + 1
}

// limitedLocked reports whether connection attempts to s are paced by
// the connect-rate limit: the backend is offline, under suspicion, or
// warming up or waits to warm up once it is online.
func (s *set[C]) limitedLocked(mnow int64) bool {
	if s.p.policy().ConnectRate <= 0 {
		return false
	}
	return s.getHealth() == HealthOffline || s.suspect.Load() || s.warmNext || s.warmth(mnow) < 1
}

// mayConnectLocked reports whether a connection attempt to s may start at
// mnow; if not, it returns when one may. It takes the attempt's token.
//
// The rate is ConnectRate times the backend's share of the pool's slots,
// but never less than one attempt per ProbeBackoffMax, so that an offline
// backend is still probed that often.
func (s *set[C]) mayConnectLocked(mnow int64) (ok bool, next int64) {
	if !s.limitedLocked(mnow) {
		return true, 0
	}
	// An attempt costs between half a token and one and a half, drawn
	// at random: turns come between half the rate's period and one and a
	// half apart, so that pools that lost a backend together, and so
	// took their turns together, drift apart within a few turns, while
	// the rate holds on average and no turn waits much past its period.
	return s.bucket.take(mnow, s.connectRate(), s.p.policy().ConnectBurst, 0.5+rand.Float64())
}

// connectRate is the pace of connection attempts to s while it is
// limited, in attempts per second: ConnectRate times its share of the
// pool's slots, but at least one per ProbeBackoffMax.
func (s *set[C]) connectRate() float64 {
	pol := s.p.policy()
	return max(pol.ConnectRate*float64(max(s.share, 1)), 1/pol.ProbeBackoffMax.Seconds())
}

// paceJitter draws a delay within half the period of s's connect rate.
func (s *set[C]) paceJitter() int64 {
	return rand.Int64N(int64(float64(time.Second)/s.connectRate()/2) + 1)
}

// warmFloor is the share of its weight a backend starts slow start with.
const warmFloor = 0.1

// warmth returns the share of its weight s has at mnow: 1, or during slow
// start the time since it began over SlowStart, from warmFloor up.
func (s *set[C]) warmth(mnow int64) float64 {
	d := s.p.policy().SlowStart
	if d <= 0 || s.warmAt == 0 {
		return 1
	}
	f := float64(mnow-s.warmAt) / float64(d)
	if f >= 1 {
		return 1
	}
	return max(f, warmFloor)
}

// warmStep is how often a pool with a backend in slow start rebuilds its
// picker and rebalances its slots, to follow the backend's growing weight.
func (p *Pool[C]) warmStep() time.Duration {
	return max(p.policy().SlowStart/20, 100*time.Millisecond)
}
