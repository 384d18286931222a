package fleetsim

import (
	"fmt"
	"time"
)

// Scenario is a script of events against the cluster and the figures
// measured while it runs. Get them from [Scenarios].
type Scenario struct {
	// Name is the scenario's short name, such as "restart".
	Name string

	backends int // that exist, in DNS or not
	initial  int // in DNS at the start
	length   func(Timing) time.Duration
	describe func(Timing) string
	script   func(*Fleet)
	figures  func(*Fleet) []Figure
}

func (sc Scenario) summary(t Timing) string { return sc.describe(t) }

// Scenarios returns every scenario: steady, restart, blackhole, add,
// remove and dns.
func Scenarios() []Scenario {
	return []Scenario{steady, restart, blackhole, add, remove, dnsOutage}
}

// The backends the scenarios act on.
const (
	first  = 0 // "a"
	second = 1 // "b": restarts, is blackholed
	third  = 2 // "c": is removed
	fourth = 3 // "d": is added
)

var steady = Scenario{
	Name:     "steady",
	backends: 3, initial: 3,
	length: func(t Timing) time.Duration { return t.Warmup + t.Fault },
	describe: func(t Timing) string {
		return fmt.Sprintf("3 backends, nothing failing; measured from %v to %v", t.Warmup, t.Warmup+t.Fault)
	},
	script: func(f *Fleet) { f.sleepUntil(f.length) },
	figures: func(f *Fleet) []Figure {
		w := f.cfg.Timing
		from, to := secs(w.Warmup), secs(w.Warmup+w.Fault)
		return []Figure{
			f.spreadFigure(from, to, f.backends),
			f.churnFigure(from, to),
			f.failedFigure("claims and queries failed", from, to),
		}
	},
}

var restart = backendFault("restart", Restarting, "restarts (connections fail, new ones refused)",
	func(f *Fleet, b *backend, down, back int, steadyConns float64) []Figure {
		return []Figure{
			f.attemptsFirstFigure(b, down, steadyConns),
			f.attemptsFigure("connection attempts on b while down", b, down+1, back, steadyConns),
		}
	})

var blackhole = backendFault("blackhole", Blackholed, "is blackholed (connects, checks and queries hang)",
	func(f *Fleet, b *backend, down, back int, steadyConns float64) []Figure {
		w := f.cfg.Timing
		return []Figure{
			f.stopFigure(b, w.Warmup, w.Fault),
			f.hungFigure(b),
		}
	})

// backendFault returns a scenario in which b switches to mode after the
// warmup and back to up after the fault. Its figures are those during
// gives, then those common to every fault: while b is down, and once it
// is back.
func backendFault(name string, mode Mode, what string, during func(f *Fleet, b *backend, down, back int, steadyConns float64) []Figure) Scenario {
	return Scenario{
		Name:     name,
		backends: 3, initial: 3,
		length: func(t Timing) time.Duration { return t.Warmup + t.Fault + t.After },
		describe: func(t Timing) string {
			return fmt.Sprintf("b %s at %v, answers again at %v", what, t.Warmup, t.Warmup+t.Fault)
		},
		script: func(f *Fleet) {
			w, b := f.cfg.Timing, f.backends[second]
			f.sleepUntil(w.Warmup)
			f.watchOffline(b)
			b.setMode(mode)
			f.sleepUntil(w.Warmup + w.Fault)
			f.watchUse(b)
			b.setMode(Up)
			f.sleepUntil(f.length)
		},
		figures: func(f *Fleet) []Figure {
			w, b := f.cfg.Timing, f.backends[second]
			down, back, end := secs(w.Warmup), secs(w.Warmup+w.Fault), secs(f.length)
			steadyConns := f.avgConns(b, down-5, down)
			return append(during(f, b, down, back, steadyConns),
				f.offlineFigure(b, "b declared offline", ""),
				f.failedFigure("claims and queries failed while b "+mode.String(), down, back),
				f.throughputFigure("claims served fleet-wide while b "+mode.String()+", lowest second", down, back),
				f.attemptsFigure("connection attempts on b once back", b, back+1, end, steadyConns),
				f.firstUseFigure(b, "b first used once back"),
				f.peakShareFigure(b, back, end, 3),
				f.settleFigure(b, back, end, 3),
			)
		},
	}
}

var add = Scenario{
	Name:     "add",
	backends: 4, initial: 3,
	length: func(t Timing) time.Duration { return t.Warmup + t.After*2/3 },
	describe: func(t Timing) string {
		return fmt.Sprintf("d added to DNS at %v", t.Warmup)
	},
	script: func(f *Fleet) {
		d := f.backends[fourth]
		f.sleepUntil(f.cfg.Timing.Warmup)
		f.watchUse(d)
		f.dns.add(d.b)
		f.sleepUntil(f.length)
	},
	figures: func(f *Fleet) []Figure {
		d := f.backends[fourth]
		added, end := secs(f.cfg.Timing.Warmup), secs(f.length)
		last := max(added, end-20)
		return []Figure{
			f.firstUseFigure(d, "d first used once in DNS"),
			f.attemptsFigure("connection attempts on d", d, added+1, end, f.avgConns(d, last, end)),
			f.peakShareFigure(d, added, end, 4),
			f.settleFigure(d, added, end, 4),
			f.spreadFigure(last, end, f.backends),
		}
	},
}

var remove = Scenario{
	Name:     "remove",
	backends: 3, initial: 3,
	length: func(t Timing) time.Duration { return t.Warmup + t.After*2/3 },
	describe: func(t Timing) string {
		return fmt.Sprintf("c removed from DNS at %v", t.Warmup)
	},
	script: func(f *Fleet) {
		f.sleepUntil(f.cfg.Timing.Warmup)
		f.dns.remove(f.backends[third].b)
		f.sleepUntil(f.length)
	},
	figures: func(f *Fleet) []Figure {
		c := f.backends[third]
		removed, end := secs(f.cfg.Timing.Warmup), secs(f.length)
		last := max(removed, end-20)
		return []Figure{
			f.drainFigure(c, removed, end),
			f.failedFigure("claims and queries failed", removed, end),
			f.spreadFigure(last, end, f.backends[:third]),
		}
	},
}

var dnsOutage = Scenario{
	Name:     "dns",
	backends: 3, initial: 3,
	length: func(t Timing) time.Duration { return t.Warmup + t.Fault + t.After/3 },
	describe: func(t Timing) string {
		return fmt.Sprintf("DNS fails at %v, answers again at %v", t.Warmup, t.Warmup+t.Fault)
	},
	script: func(f *Fleet) {
		w := f.cfg.Timing
		f.sleepUntil(w.Warmup)
		f.dns.setDown(true)
		f.sleepUntil(w.Warmup + w.Fault)
		f.dns.setDown(false)
		f.sleepUntil(f.length)
	},
	figures: func(f *Fleet) []Figure {
		w := f.cfg.Timing
		down, back, end := secs(w.Warmup), secs(w.Warmup+w.Fault), secs(f.length)
		return []Figure{
			f.failedFigure("claims and queries failed while DNS down", down, back),
			f.keptFigure(down, back),
			f.churnFigure(down, back),
			f.dnsFigure(down-10, down, back, end),
		}
	},
}

// secs converts d to whole seconds of the simulation.
func secs(d time.Duration) int { return int(d / time.Second) }
