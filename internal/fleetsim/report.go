package fleetsim

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is what one scenario run measured.
type Report struct {
	// Scenario is the scenario's name, and Summary what it did.
	Scenario, Summary string
	// Pools is the number of pools that ran.
	Pools int
	// Figures are the scenario's figures.
	Figures []Figure
	// Violations counts what must never happen.
	Violations Violations
	// MaxSlots and MaxPerBackend are the most connections (open or being
	// opened, closing included) any pool held in all and to one backend.
	MaxSlots, MaxPerBackend int

	fleet *Fleet
}

// Violations counts broken invariants. All must be zero.
type Violations struct {
	// CapExceeded counts the times a pool held more connections than
	// its policy's MaxSlots or MaxPerBackend.
	CapExceeded int64
	// Doubled counts connections handed to a second user (a claim, a
	// check or a recycle) while in use, used after they were closed, or
	// closed twice.
	Doubled int64
	// Lost counts claims not given back and connections not closed once
	// the workers stopped and the pools closed.
	Lost int64
}

// None reports whether nothing was violated.
func (v Violations) None() bool { return v == Violations{} }

// WriteTable writes the figures of reports as one table: scenario,
// figure, measured, goal, met. The last rows are the invariants, over all
// reports.
func WriteTable(w io.Writer, reports []*Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tmeasured\tgoal\tmet")
	fmt.Fprintln(tw, "--------\t------\t--------\t----\t---")
	var v Violations
	maxSlots, maxPer := 0, 0
	pools := 0
	for _, r := range reports {
		for _, f := range r.Figures {
			goal, met := f.Goal, "info"
			if goal == "" {
				goal = "—"
			} else if f.Met {
				met = "met"
			} else {
				met = "NOT met"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Scenario, f.Name, f.Measured, goal, met)
		}
		v.CapExceeded += r.Violations.CapExceeded
		v.Doubled += r.Violations.Doubled
		v.Lost += r.Violations.Lost
		maxSlots, maxPer = max(maxSlots, r.MaxSlots), max(maxPer, r.MaxPerBackend)
		pools = max(pools, r.Pools)
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(tw, "all\tcaps exceeded (per pool, per backend, closing included)\t%d times (most held: %d in a pool, %d to a backend)\tnever\t%s\n",
		v.CapExceeded, maxSlots, maxPer, verdict(v.CapExceeded == 0))
	fmt.Fprintf(tw, "all\tconnections doubled (in use twice, used closed)\t%d\t0\t%s\n", v.Doubled, verdict(v.Doubled == 0))
	fmt.Fprintf(tw, "all\tclaims or connections lost\t%d\t0\t%s\n", v.Lost, verdict(v.Lost == 0))
	return tw.Flush()
}

// WriteTimeline writes what the backends saw in each second of the run:
// per backend, claims served, connection attempts, connections opened and
// closed, connections held, queries running and pools that count it
// offline; and the
// claims and queries that failed and the DNS queries.
func (r *Report) WriteTimeline(w io.Writer) error {
	f := r.fleet
	fmt.Fprintf(w, "%s: %s (%d pools)\n", r.Scenario, r.Summary, r.Pools)
	var head strings.Builder
	head.WriteString("   s")
	for _, b := range f.backends {
		fmt.Fprintf(&head, " | %s: claims  tries  open close  conns  busy  off", b.name())
	}
	head.WriteString(" | failed qfail   dns")
	fmt.Fprintln(w, head.String())
	for s := range secs(f.length) {
		var line strings.Builder
		fmt.Fprintf(&line, "%4d", s)
		for _, b := range f.backends {
			fmt.Fprintf(&line, " | %9d %6d %5d %5d %6d %5d %4d",
				b.claims.at(s), b.attempts.at(s), b.opened.at(s), b.closed.at(s), b.conns.at(s), b.busy.at(s), b.offline.at(s))
		}
		fmt.Fprintf(&line, " | %6d %5d %5d", f.failed.at(s), f.queryFailed.at(s), f.dns.queries.at(s))
		if _, err := fmt.Fprintln(w, line.String()); err != nil {
			return err
		}
	}
	return nil
}
