package hastack

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Event is what a scenario did to the cluster and when.
type Event struct {
	// Scenario names it, such as "kill" or "switchover".
	Scenario string
	// At is when it began: the SIGKILL, the switchover request, the
	// outage's start.
	At time.Time
	// Promoted is when the new primary first answered that it takes writes,
	// as a watcher polling the nodes directly saw it; zero if no node was
	// promoted.
	Promoted time.Time
	// OldPort and NewPort are the primary's PostgreSQL port before and
	// after (the same when nothing was promoted).
	OldPort, NewPort int
	// NoReplica is how long, from the event on, no node answered as a
	// replica (a monitor polls each directly every 50 ms): replica reads
	// cannot be served then.
	NoReplica time.Duration
	// Stalled is how long, from the event on, the test process itself got
	// no CPU (its ticker fired more than 500 ms late): the machine was too
	// busy for any deadline to mean much then.
	Stalled time.Duration
}

// Figures is what one system's application saw during a scenario.
type Figures struct {
	System string
	// Reads and Writes count the operations from the event on; ReadErrors
	// and WriteErrors those of them that failed.
	Reads, ReadErrors   int
	Writes, WriteErrors int
	// ReadErrorsReplicaUp counts the failed reads during which one
	// node answered as a replica throughout, so one could have served
	// them, and the test process did not stall; WriteErrorsRunning the
	// failed writes during which it did not stall.
	ReadErrorsReplicaUp, WriteErrorsRunning int
	// ReadErrorsTerminated counts the failed reads whose server ended the
	// session itself (SQLSTATE 57P01, a replica that Patroni restarts
	// with a fast shutdown); ReadErrorsReplicaUp leaves them out.
	ReadErrorsTerminated int
	// WrongRoleReads counts replica reads, over the whole run, that a
	// server not in recovery (a primary) answered; WrongRoleAfter those of
	// them begun more than knowGrace after the system's first write on the
	// new primary, when it knew which server that is (and the test process
	// did not stall in between; HAProxy's first write only says its primary
	// port knows). A promoted replica
	// answers as a primary before any client can know, so only the second
	// is a fault.
	WrongRoleReads, WrongRoleAfter int
	// FirstWrite is the time from the event to the first write acknowledged
	// by the new primary, -1 when no write reached it; FromPromotion the
	// same from its promotion, as the watcher saw it (a little late, so it
	// may be slightly negative), meaningless when FirstWrite is -1.
	FirstWrite, FromPromotion time.Duration
	// WriteGap and ReadGap are the longest stretches, from the event on,
	// without an acknowledged write or a successful read.
	WriteGap, ReadGap time.Duration
	// Acked counts acknowledged writes over the whole run; Lost those of
	// them the new primary does not have after the run; FencedAcks the
	// writes acknowledged by a server other than the new primary after its
	// promotion.
	Acked, Lost, FencedAcks int
	// FirstErrors holds up to three distinct errors, with when their
	// operation began (from the event) and how long it took, for the log.
	FirstErrors []string
	// LateWrongRole describes up to three replica reads answered by a
	// primary and begun after the first write on the new primary (within
	// knowGrace or not), for the log.
	LateWrongRole []string
}

// knowGrace is how long after its first write on the new primary a system
// may still send a replica read there. qorb's replica claims used to reach
// the new primary for a few milliseconds after its first write there,
// until a claim judged a backend by its current role; now they must not.
const knowGrace = 0

// clusterView is what the monitor saw of the cluster and of the test
// process.
type clusterView interface {
	// replicaUp reports whether one node served as a replica throughout.
	replicaUp(from, to time.Time) bool
	// stalled reports whether the test process stalled in between.
	stalled(from, to time.Time) bool
}

// terminatedByServer reports whether err says the server ended the session
// (admin_shutdown, as a fast shutdown does).
func terminatedByServer(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57P01"
}

// compute works out the figures of one system's run from its operations,
// the event, the ids the new primary holds, and whether a replica served
// throughout a stretch of time.
func compute(name string, reads, writes []Op, ev Event, onPrimary map[int64]bool, cl clusterView) Figures {
	f := Figures{System: name, FirstWrite: -1, FromPromotion: -1}
	var seen []string
	noteErr := func(op Op) {
		msg := op.Err.Error()
		if len(f.FirstErrors) < 3 && !slices.Contains(seen, msg) {
			seen = append(seen, msg)
			f.FirstErrors = append(f.FirstErrors, fmt.Sprintf("%+.2fs (took %v): %s",
				op.Start.Sub(ev.At).Seconds(), op.End.Sub(op.Start).Round(time.Millisecond), msg))
		}
	}
	var first time.Time
	for _, w := range writes {
		if w.Err == nil && !w.End.Before(ev.At) && w.Port == ev.NewPort && (first.IsZero() || w.End.Before(first)) {
			first = w.End
		}
	}
	var readEnds, writeEnds []time.Time
	for _, r := range reads {
		if r.Err == nil && !r.InRecovery {
			f.WrongRoleReads++
			if ev.NewPort != ev.OldPort && !first.IsZero() && r.Start.After(first) {
				if r.Start.After(first.Add(knowGrace)) && !cl.stalled(first, r.Start) {
					f.WrongRoleAfter++
				}
				if len(f.LateWrongRole) < 3 {
					f.LateWrongRole = append(f.LateWrongRole, fmt.Sprintf("replica read on %d begun %v after the first write on the new primary, took %v",
						r.Port, r.Start.Sub(first).Round(time.Millisecond), r.End.Sub(r.Start).Round(time.Millisecond)))
				}
			}
		}
		if r.End.Before(ev.At) {
			continue
		}
		f.Reads++
		if r.Err != nil {
			f.ReadErrors++
			terminated := terminatedByServer(r.Err)
			if terminated {
				f.ReadErrorsTerminated++
			}
			if !terminated && cl.replicaUp(r.Start, r.End) && !cl.stalled(r.Start, r.End) {
				f.ReadErrorsReplicaUp++
			}
			noteErr(r)
		} else {
			readEnds = append(readEnds, r.End)
		}
	}
	for _, w := range writes {
		if w.Err == nil {
			f.Acked++
			if !onPrimary[w.ID] {
				f.Lost++
			}
			if !ev.Promoted.IsZero() && w.Port != ev.NewPort && w.End.After(ev.Promoted) {
				f.FencedAcks++
			}
		}
		if w.End.Before(ev.At) {
			continue
		}
		f.Writes++
		if w.Err != nil {
			f.WriteErrors++
			if !cl.stalled(w.Start, w.End) {
				f.WriteErrorsRunning++
			}
			noteErr(w)
			continue
		}
		writeEnds = append(writeEnds, w.End)
	}
	if !first.IsZero() && ev.NewPort != ev.OldPort {
		f.FirstWrite = first.Sub(ev.At)
		if !ev.Promoted.IsZero() {
			f.FromPromotion = first.Sub(ev.Promoted)
		}
	}
	f.WriteGap = longestGap(ev.At, writeEnds)
	f.ReadGap = longestGap(ev.At, readEnds)
	return f
}

// longestGap returns the longest stretch between from and the first of
// ends, or between two successive ends.
func longestGap(from time.Time, ends []time.Time) time.Duration {
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	prev := from
	for _, e := range ends {
		gap = max(gap, e.Sub(prev))
		prev = e
	}
	return gap
}

// WriteTable writes the figures of one scenario as a Markdown table, one
// column per system, padded to read as well in a terminal.
func WriteTable(w io.Writer, ev Event, figs []Figures) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(cells []string) {
		fmt.Fprintln(tw, "| "+strings.Join(cells, "\t| ")+"\t|")
	}
	row := func(label string, cell func(f Figures) string) {
		cells := []string{label}
		for _, f := range figs {
			cells = append(cells, cell(f))
		}
		line(cells)
	}
	dur := func(d time.Duration) string {
		if d < 0 {
			return "none"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	row(ev.Scenario, func(f Figures) string { return f.System })
	rule := []string{"---"}
	for range figs {
		rule = append(rule, "---:")
	}
	line(rule)
	row("read errors", func(f Figures) string { return fmt.Sprintf("%d / %d", f.ReadErrors, f.Reads) })
	if ev.NoReplica > 0 || ev.Stalled > 0 {
		row(fmt.Sprintf("… while a replica served (none did for %s; the test stalled for %s)", dur(ev.NoReplica), dur(ev.Stalled)),
			func(f Figures) string { return fmt.Sprint(f.ReadErrorsReplicaUp) })
	}
	row("… the server ended the session (57P01)", func(f Figures) string { return fmt.Sprint(f.ReadErrorsTerminated) })
	row("write errors", func(f Figures) string { return fmt.Sprintf("%d / %d", f.WriteErrors, f.Writes) })
	if ev.NewPort != ev.OldPort {
		row("event → first write on the new primary", func(f Figures) string { return dur(f.FirstWrite) })
		row("promotion → first write on it", func(f Figures) string {
			if f.FirstWrite < 0 {
				return "none"
			}
			return f.FromPromotion.Round(10 * time.Millisecond).String()
		})
	}
	row("longest stretch without a write", func(f Figures) string { return dur(f.WriteGap) })
	row("longest stretch without a read", func(f Figures) string { return dur(f.ReadGap) })
	row("replica reads answered by a primary", func(f Figures) string { return fmt.Sprint(f.WrongRoleReads) })
	if ev.NewPort != ev.OldPort {
		row("… begun after the first write on the new primary",
			func(f Figures) string { return fmt.Sprint(f.WrongRoleAfter) })
	}
	row("acknowledged writes lost", func(f Figures) string { return fmt.Sprintf("%d / %d", f.Lost, f.Acked) })
	row("… acknowledged by a fenced old primary", func(f Figures) string { return fmt.Sprint(f.FencedAcks) })
	return tw.Flush()
}
