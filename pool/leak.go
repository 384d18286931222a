package pool

import (
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Leak detection: with Policy.LeakThreshold set, each claim records where
// it was made (its goroutine's stack, without the pool's own frames), and
// the control loop reports, once, each claim held past the threshold: as
// an EventLeak, counted in Stats.Leaks. Without the threshold nothing is
// recorded: the claim path pays one comparison.

// maxTraceDepth bounds the frames a claim's trace keeps.
const maxTraceDepth = 32

// claimTrace is where one claim was made. It is written once, by the
// claimer, and published through slot.trace; reported is the control
// loop's alone.
type claimTrace struct {
	gen      uint64 // the claim's generation (slot.claim)
	pcs      []uintptr
	reported bool
}

// traceClaim records where c was made: the stack from the caller of
// traceClaim's caller (the pool's entry point the program called), less
// skip more frames.
func (p *Pool[C]) traceClaim(c Claim[C], skip int) {
	var pcs [maxTraceDepth]uintptr
	n := runtime.Callers(3+skip, pcs[:]) // 3: runtime.Callers, traceClaim, the entry point
	c.slot.trace.Store(&claimTrace{gen: c.gen, pcs: append([]uintptr(nil), pcs[:n]...)})
}

// stack formats the trace as a goroutine's stack in a panic: for each
// frame, the function, then a tab, the file and the line.
func (t *claimTrace) stack() string {
	var b strings.Builder
	frames := runtime.CallersFrames(t.pcs)
	for {
		f, more := frames.Next()
		if f.Function != "" {
			b.WriteString(f.Function)
			b.WriteString("()\n\t")
			b.WriteString(f.File)
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(f.Line))
			b.WriteByte('\n')
		}
		if !more {
			break
		}
	}
	return b.String()
}

// leak is one claim found held past the threshold.
type leak struct {
	ev    Event
	trace *claimTrace
}

// findLeaks reports each claim held past the leak threshold that has not
// been reported, and returns when it should look again: a quarter of the
// threshold from now, so that a claim is reported within 1¼ thresholds of
// being made, or sooner, when an unreported claim reaches the threshold.
func (p *Pool[C]) findLeaks(now time.Time) time.Time {
	limit := p.policy().LeakThreshold
	at := p.mono(now)
	next := now.Add(limit / 4)
	p.mu.Lock()
	sets := p.setList()
	p.mu.Unlock()
	var found []leak
	for _, s := range sets {
		s.mu.Lock()
		for _, sl := range s.slots {
			if sl.getState() != StateClaimed {
				continue
			}
			tr := sl.trace.Load()
			if tr == nil || tr.reported || tr.gen != sl.claim.Load() {
				continue // untraced, reported, or a claim that ended
			}
			held := time.Duration(at - sl.claimedAt.Load())
			if held < limit {
				next = earliest(next, now.Add(limit-held))
				continue
			}
			tr.reported = true
			found = append(found, leak{Event{Kind: EventLeak, Backend: s.key, Slot: sl.id, Duration: held}, tr})
		}
		s.mu.Unlock()
	}
	if len(found) == 0 {
		return next
	}
	// Reported first, then counted: whoever sees the count finds the
	// report already logged.
	if p.observing() {
		for _, l := range found {
			l.ev.Stack = l.trace.stack()
			p.emit(l.ev)
		}
	}
	p.mu.Lock()
	p.stats.leaks += uint64(len(found))
	p.mu.Unlock()
	return next
}
