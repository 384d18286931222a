package fleetsim

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Figure is one measured figure of a scenario, with its goal.
type Figure struct {
	// Name says what was measured.
	Name string
	// Measured is the value found.
	Measured string
	// Goal is the value wanted; empty for a figure shown for
	// information.
	Goal string
	// Met reports whether Measured meets Goal.
	Met bool
}

// claimsAt returns the claims all backends served in second s.
func (f *Fleet) claimsAt(s int) int64 {
	var n int64
	for _, b := range f.backends {
		n += b.claims.at(s)
	}
	return n
}

// ratios returns, for each second from from to to, b's share of the
// claims over the fair share 1/n; NaN for a second without claims.
func (f *Fleet) ratios(b *backend, from, to, n int) []float64 {
	var rs []float64
	for s := from; s < to; s++ {
		total := f.claimsAt(s)
		if total == 0 {
			rs = append(rs, math.NaN())
			continue
		}
		rs = append(rs, float64(b.claims.at(s))/float64(total)*float64(n))
	}
	return rs
}

// avgConns returns b's connections, fleet-wide, averaged over the samples
// of seconds from to to.
func (f *Fleet) avgConns(b *backend, from, to int) float64 {
	from = max(from, 1)
	if to <= from {
		return float64(b.conns.at(from))
	}
	var sum int64
	for s := from; s < to; s++ {
		sum += b.conns.at(s)
	}
	return float64(sum) / float64(to-from)
}

// peakShareFigure: the most b served in any second from from to to, as a
// multiple of its fair share among n backends.
func (f *Fleet) peakShareFigure(b *backend, from, to, n int) Figure {
	peak, at := 0.0, from
	for i, r := range f.ratios(b, from, to, n) {
		if r > peak {
			peak, at = r, from+i
		}
	}
	return Figure{
		Name:     fmt.Sprintf("%s's peak share of claims, × fair (1/%d)", b.name(), n),
		Measured: fmt.Sprintf("%.2f× (%.0f %% of all, at %d s)", peak, peak*100/float64(n), at),
		Goal:     "≤ 1.5×",
		Met:      peak <= 1.5,
	}
}

// settleFigure: how long after from b's share stays within ±10 % of fair
// until to.
func (f *Fleet) settleFigure(b *backend, from, to, n int) Figure {
	rs := f.ratios(b, from, to, n)
	settled := len(rs)
	for i := len(rs) - 1; i >= 0; i-- {
		if math.IsNaN(rs[i]) || math.Abs(rs[i]-1) > 0.1 {
			break
		}
		settled = i
	}
	fig := Figure{
		Name: fmt.Sprintf("%s's share within ±10 %% of fair for good, after", b.name()),
		Goal: "≤ 30 s",
	}
	if settled == len(rs) {
		fig.Measured = fmt.Sprintf("not within %d s", len(rs))
		return fig
	}
	fig.Measured = fmt.Sprintf("%d s", settled)
	fig.Met = settled <= 30
	return fig
}

// attemptsFigure: the most connection attempts b saw in a second from
// from to to, against its steady connections.
func (f *Fleet) attemptsFigure(name string, b *backend, from, to int, steadyConns float64) Figure {
	var peak int64
	at := from
	for s := from; s < to; s++ {
		if n := b.attempts.at(s); n > peak {
			peak, at = n, s
		}
	}
	pct := float64(peak) * 100 / math.Max(steadyConns, 1)
	return Figure{
		Name:     name + ", peak per s (after the first s)",
		Measured: fmt.Sprintf("%d/s = %.1f %% of %.0f (at %d s)", peak, pct, steadyConns, at),
		Goal:     "≤ 10 %",
		Met:      pct <= 10,
	}
}

// attemptsFirstFigure: the connection attempts b saw in second s.
func (f *Fleet) attemptsFirstFigure(b *backend, s int, steadyConns float64) Figure {
	n := b.attempts.at(s)
	return Figure{
		Name:     fmt.Sprintf("connection attempts on %s in its first second down", b.name()),
		Measured: fmt.Sprintf("%d = %.0f %% of %.0f", n, float64(n)*100/math.Max(steadyConns, 1), steadyConns),
	}
}

// spreadFigure: how far from even the connections to bs are, fleet-wide,
// averaged from from to to.
func (f *Fleet) spreadFigure(from, to int, bs []*backend) Figure {
	var avgs []float64
	sum := 0.0
	for _, b := range bs {
		a := f.avgConns(b, from, to)
		avgs = append(avgs, a)
		sum += a
	}
	mean := sum / float64(len(bs))
	worst := 0.0
	for _, a := range avgs {
		worst = max(worst, math.Abs(a-mean)/math.Max(mean, 1))
	}
	s := ""
	for i, b := range bs {
		s += fmt.Sprintf(" %s %.0f", b.name(), avgs[i])
	}
	return Figure{
		Name:     fmt.Sprintf("connections per backend (%d backends), worst off even", len(bs)),
		Measured: fmt.Sprintf("%.1f %% (%s; first/last %.2f)", worst*100, s[1:], avgs[0]/math.Max(avgs[len(avgs)-1], 1)),
		Goal:     "±3 %",
		Met:      worst <= 0.03,
	}
}

// churnFigure: connections opened per second from from to to, beyond
// those that grew the fleet's total (a pool that grows to its working
// size is not churning), against those held.
func (f *Fleet) churnFigure(from, to int) Figure {
	var opened, first, last int64
	held := 0.0
	for s := from; s < to; s++ {
		var o, c int64
		for _, b := range f.backends {
			o += b.opened.at(s)
			c += b.conns.at(s)
		}
		if s == from {
			first = c
		}
		last = c
		opened += o
		held += float64(c)
	}
	n := float64(max(to-from, 1))
	churned := opened - max(last-first, 0)
	rate := float64(churned) / n / math.Max(held/n, 1)
	return Figure{
		Name:     "connections reopened per s (opened beyond net growth), of those held",
		Measured: fmt.Sprintf("%.2f %% (%.1f/s of %.0f; %d opened, the total grew by %d)", rate*100, float64(churned)/n, held/n, opened, last-first),
		Goal:     "≤ 0.1 %",
		Met:      rate <= 0.001,
	}
}

// failedFigure: the claims, and the queries on claimed connections, that
// failed from from to to.
func (f *Fleet) failedFigure(name string, from, to int) Figure {
	var failed, queries, all int64
	for s := from; s < to; s++ {
		failed += f.failed.at(s)
		queries += f.queryFailed.at(s)
		all += f.claimsAt(s)
	}
	return Figure{
		Name:     name,
		Measured: fmt.Sprintf("%d claims of %d; %d queries", failed, failed+all, queries),
	}
}

// durations returns the median and the largest of ds, and how many pools
// had none (negative).
func durations(ds []time.Duration) (median, slowest time.Duration, missing int) {
	var got []time.Duration
	for _, d := range ds {
		if d < 0 {
			missing++
			continue
		}
		got = append(got, d)
	}
	if len(got) == 0 {
		return -1, -1, missing
	}
	slices.Sort(got)
	return got[len(got)/2], got[len(got)-1], missing
}

// since returns, per pool, the time from a watch mark to what at holds,
// negative when it holds nothing.
func (f *Fleet) since(from int64, at func(*member) int64) []time.Duration {
	ds := make([]time.Duration, len(f.members))
	for i, m := range f.members {
		t := at(m)
		if t == 0 || from == 0 {
			ds[i] = -1
			continue
		}
		ds[i] = time.Duration(t - from)
	}
	return ds
}

func formatWait(median, slowest time.Duration, missing, pools int) string {
	r := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	if median < 0 {
		return fmt.Sprintf("never (%d pools)", missing)
	}
	s := r(median) + " / " + r(slowest)
	if missing > 0 {
		s += fmt.Sprintf(" (%d of %d pools never)", missing, pools)
	}
	return s
}

// firstUseFigure: how long after the watch mark each pool first handed
// out a connection to b.
func (f *Fleet) firstUseFigure(b *backend, name string) Figure {
	from := f.useFrom[b.idx].Load()
	median, slowest, missing := durations(f.since(from, func(m *member) int64 { return m.firstUse[b.idx].Load() }))
	return Figure{
		Name:     name + ", median / slowest pool",
		Measured: formatWait(median, slowest, missing, len(f.members)),
		Goal:     "≤ 5 s / ≤ 10 s",
		Met:      missing == 0 && median >= 0 && median <= 5*time.Second && slowest <= 10*time.Second,
	}
}

// offlineFigure: how long after the watch mark each pool declared b
// offline.
func (f *Fleet) offlineFigure(b *backend, name, goal string) Figure {
	from := f.offFrom[b.idx].Load()
	median, slowest, missing := durations(f.since(from, func(m *member) int64 { return m.offlineAt[b.idx].Load() }))
	return Figure{
		Name:     name + ", median / slowest pool",
		Measured: formatWait(median, slowest, missing, len(f.members)),
		Goal:     goal,
	}
}

// stopFigure: how long after a blackhole began at start b served its
// last claim, within a blackhole that lasted fault.
func (f *Fleet) stopFigure(b *backend, start, fault time.Duration) Figure {
	fig := Figure{Name: fmt.Sprintf("blackholed %s's last claim, after", b.name()), Goal: "≤ 3 s"}
	last := b.faultClaim.Load()
	if last == 0 {
		fig.Measured, fig.Met = "none", true
		return fig
	}
	d := time.Duration(last) - start
	fig.Measured = d.Round(100 * time.Millisecond).String()
	if d > fault-time.Second {
		fig.Measured = "still at the end, " + fig.Measured
	}
	fig.Met = d <= 3*time.Second
	return fig
}

// throughputFigure: the fewest claims served fleet-wide in a second from
// from to to, against the average of the ten seconds before from.
func (f *Fleet) throughputFigure(name string, from, to int) Figure {
	var before int64
	for s := from - 10; s < from; s++ {
		before += f.claimsAt(s)
	}
	low, at := int64(math.MaxInt64), from
	for s := from; s < to; s++ {
		if n := f.claimsAt(s); n < low {
			low, at = n, s
		}
	}
	avg := float64(before) / 10
	return Figure{
		Name:     name,
		Measured: fmt.Sprintf("%d/s = %.0f %% of %.0f/s before (at %d s)", low, float64(low)*100/math.Max(avg, 1), avg, at),
	}
}

// hungFigure: the claims b served while blackholed, each of which hung.
func (f *Fleet) hungFigure(b *backend) Figure {
	n := b.faultClaims.Load()
	return Figure{
		Name:     fmt.Sprintf("claims blackholed %s served (each hangs)", b.name()),
		Measured: fmt.Sprintf("%d (%.1f per pool)", n, float64(n)/float64(len(f.members))),
	}
}

// drainFigure: how long after from b had no connection left.
func (f *Fleet) drainFigure(b *backend, from, to int) Figure {
	fig := Figure{Name: fmt.Sprintf("removed %s's last connection closed, after", b.name())}
	for s := from + 1; s < to; s++ {
		if b.conns.at(s) == 0 {
			fig.Measured = fmt.Sprintf("≤ %d s", s-from)
			return fig
		}
	}
	fig.Measured = fmt.Sprintf("%d left at the end", b.conns.at(to-1))
	return fig
}

// keptFigure: the connections held during a DNS outage, against before.
func (f *Fleet) keptFigure(from, to int) Figure {
	before, during := 0.0, 0.0
	for _, b := range f.backends {
		before += f.avgConns(b, from-5, from)
		during += f.avgConns(b, to-5, to)
	}
	return Figure{
		Name:     "connections held at the end of the DNS outage, of before",
		Measured: fmt.Sprintf("%.0f of %.0f", during, before),
	}
}

// dnsFigure: DNS queries per second, steady (from base to down), during
// the outage and once DNS is back.
func (f *Fleet) dnsFigure(base, down, back, end int) Figure {
	avg := 0.0
	for s := base; s < down; s++ {
		avg += float64(f.dns.queries.at(s))
	}
	avg /= float64(max(down-base, 1))
	peak := func(from, to int) (int64, int) {
		var p int64
		at := from
		for s := from; s < to; s++ {
			if n := f.dns.queries.at(s); n > p {
				p, at = n, s
			}
		}
		return p, at
	}
	pd, atd := peak(down, back)
	pb, atb := peak(back, end)
	return Figure{
		Name: "DNS queries per s: steady / peak while down / peak once back",
		Measured: fmt.Sprintf("%.0f / %d (%.1f×, at %d s) / %d (at %d s)",
			avg, pd, float64(pd)/math.Max(avg, 1), atd, pb, atb),
	}
}
