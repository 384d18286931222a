package pool

import (
	"math/rand/v2"
	"time"
)

// Backoff and jitter: connection lifetimes, health-check times and the wait
// between connection attempts are each drawn at random, so that slots
// opened together do not expire, get checked or retry together.

// lifetimeFrom draws a connection's expiry on the pool's clock:
// MaxLifetime less up to a tenth. Zero means never.
func (p *Pool[C]) lifetimeFrom(now time.Time) int64 {
	d := p.policy().MaxLifetime
	if d < 0 {
		return 0
	}
	d -= time.Duration(rand.Int64N(int64(d)/10 + 1))
	return p.mono(now.Add(d))
}

// nextCheckFrom draws the next periodic health check: the interval plus up
// to a tenth, so checks of connections opened together spread out.
func (p *Pool[C]) nextCheckFrom(now time.Time) int64 {
	d := p.policy().HealthInterval
	if d < 0 {
		return 0
	}
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	return p.mono(now.Add(d))
}

// backoff returns the wait before connection attempt n+1 after n failures
// in a row: exponential from BackoffMin to BackoffMax, or to
// ProbeBackoffMax if probing is set (the backend is offline and this slot
// probes it), drawn at random from the upper half of that value on every
// attempt.
func (p *Pool[C]) backoff(failures int, probing bool) time.Duration {
	pol := p.policy()
	top := pol.BackoffMax
	if probing {
		top = min(top, pol.ProbeBackoffMax)
	}
	d := pol.BackoffMin
	for i := 1; i < failures && d < top; i++ {
		d *= 2
	}
	if d > top {
		d = top
	}
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}
