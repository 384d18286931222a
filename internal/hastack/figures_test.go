package hastack

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestCompute works the figures out of a made-up run: a kill at t0, a
// promotion 2 s later, and operations around them.
func TestCompute(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ev := Event{Scenario: "kill", At: t0, Promoted: at(2000), OldPort: 1, NewPort: 2}
	fail := errors.New("boom")
	reads := []Op{
		{Start: at(-100), End: at(-90), Port: 3, InRecovery: true},
		{Start: at(100), End: at(2100), Err: fail}, // no replica up: excused
		{Start: at(2050), End: at(2060), Port: 2},  // the promoted node, before the first write
		{Start: at(2500), End: at(2510), Port: 2},  // after it: a fault
		{Start: at(2600), End: at(2610), Port: 3, InRecovery: true},
		{Start: at(2700), End: at(2710), Err: &pgconn.PgError{Code: "57P01"}}, // a replica restarting
	}
	writes := []Op{
		{Start: at(-50), End: at(-40), Port: 1, ID: 1},
		{Start: at(-10), End: at(5), Err: fail, ID: 2},
		{Start: at(2200), End: at(2300), Port: 2, ID: 3},
		{Start: at(2400), End: at(2450), Port: 2, ID: 4}, // lost
	}
	onPrimary := map[int64]bool{1: true, 3: true}
	f := compute("sys", reads, writes, ev, onPrimary, fakeView{upFrom: at(2500)})

	if f.Reads != 5 || f.ReadErrors != 2 || f.ReadErrorsReplicaUp != 0 || f.ReadErrorsTerminated != 1 {
		t.Errorf("reads %d, errors %d, with a replica up %d, ended by the server %d; want 5, 2, 0, 1",
			f.Reads, f.ReadErrors, f.ReadErrorsReplicaUp, f.ReadErrorsTerminated)
	}
	if f.Writes != 3 || f.WriteErrors != 1 || f.Acked != 3 || f.Lost != 1 || f.FencedAcks != 0 {
		t.Errorf("writes %d, errors %d, acked %d, lost %d, fenced %d; want 3, 1, 3, 1, 0",
			f.Writes, f.WriteErrors, f.Acked, f.Lost, f.FencedAcks)
	}
	if f.WrongRoleReads != 2 || f.WrongRoleAfter != 1 {
		t.Errorf("wrong-role reads %d, after the first write %d; want 2, 1", f.WrongRoleReads, f.WrongRoleAfter)
	}
	if f.FirstWrite != 2300*time.Millisecond || f.FromPromotion != 300*time.Millisecond {
		t.Errorf("first write %v after the event, %v after the promotion; want 2.3s, 300ms", f.FirstWrite, f.FromPromotion)
	}
	if f.WriteGap != 2300*time.Millisecond {
		t.Errorf("longest write gap %v, want 2.3s", f.WriteGap)
	}

	var b strings.Builder
	if err := WriteTable(&b, ev, []Figures{f}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| kill ", "| read errors ", "| 2 / 5 ", "| 2.3s ", "| 300ms "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
}

// fakeView has a replica serving from upFrom on, and no stall.
type fakeView struct{ upFrom time.Time }

func (v fakeView) replicaUp(from, _ time.Time) bool { return from.After(v.upFrom) }
func (fakeView) stalled(_, _ time.Time) bool        { return false }

// TestMonitorSpans checks what the monitor makes of its polls: node 0 a
// replica until 300 ms, node 1 restarting from 100 to 400 ms.
func TestMonitorSpans(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	m := &monitor{samples: make([][]sample, 2)}
	for ms := 0; ms <= 600; ms += 50 {
		m.samples[0] = append(m.samples[0], sample{at(ms), ms < 300})
		m.samples[1] = append(m.samples[1], sample{at(ms), ms < 100 || ms >= 400})
	}
	for _, tt := range []struct {
		from, to int
		want     bool
	}{
		{10, 90, true},    // both serve
		{60, 240, true},   // node 0 serves throughout
		{260, 320, false}, // node 0 stops, node 1 is down
		{420, 560, true},  // node 1 is back
		{-10, 20, false},  // no poll before
		{580, 700, false}, // no poll after
	} {
		if got := m.replicaUp(at(tt.from), at(tt.to)); got != tt.want {
			t.Errorf("replicaUp(%dms, %dms) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
	if got := m.noReplica(t0); got != 100*time.Millisecond {
		t.Errorf("noReplica = %v, want 100ms (from 300 to 400)", got)
	}
	m.stalls = []span{{at(1000), at(1800)}}
	if !m.stalled(at(900), at(1100)) || m.stalled(at(1800), at(1900)) || m.stalled(at(0), at(1000)) {
		t.Errorf("stalled: a stall from 1000 to 1800 ms should overlap 900-1100 only")
	}
	if got := m.stallTime(at(1400)); got != 400*time.Millisecond {
		t.Errorf("stallTime(1400ms) = %v, want 400ms", got)
	}
}
