//go:build unix

package main

import (
	"strings"
	"time"

	"github.com/qorb-go/qorb/statshttp"
)

// "qorb top" keeps what each poll showed of each backend, to draw its
// claims per second, mean claim wait and errors over the last two
// minutes as one-line sparklines, one mark per few polls.

// trendKind is what a sparkline shows.
type trendKind int

const (
	trendNone trendKind = iota
	trendRate
	trendWait
	trendErrors
)

const (
	trendWidth = 20              // marks in a sparkline
	trendSpan  = 2 * time.Minute // what a sparkline covers, at most -interval per mark less
	// trendKeep is how many polls a backend's history keeps.
	trendKeep = 1200
)

// sample is what one poll showed of one backend, over the interval since
// the poll before.
type sample struct {
	ok      bool // false: a gap (the backend was not in both snapshots)
	seconds float64
	claims  uint64
	wait    float64 // seconds, in all
	errors  uint64
}

// history is one backend's samples; samples[i] is poll first+i.
type history struct {
	first   int
	samples []sample
}

// push takes a new snapshot as the current one and records what each
// backend did since the last.
func (t *top) push(cur *statshttp.Snapshot) {
	t.prev, t.cur = t.cur, cur
	t.polls++
	if t.history == nil {
		t.history = map[string]*history{}
	}
	for _, r := range t.rows() {
		if r.rate < 0 {
			continue
		}
		k := backendKey(r.b)
		h := t.history[k]
		if h == nil {
			h = &history{first: t.polls}
			t.history[k] = h
		}
		for h.first+len(h.samples) < t.polls {
			h.samples = append(h.samples, sample{}) // polls it missed
		}
		h.samples = append(h.samples, sample{ok: true, seconds: r.seconds, claims: r.claims, wait: r.waitSum, errors: r.errors})
		if drop := len(h.samples) - trendKeep; drop > 0 {
			h.samples = append(h.samples[:0], h.samples[drop:]...)
			h.first += drop
		}
	}
	for k, h := range t.history {
		if h.first+len(h.samples) < t.polls-trendKeep {
			delete(t.history, k) // gone for good
		}
	}
}

// bucketPolls is how many polls one mark of a sparkline stands for.
func (t *top) bucketPolls() int {
	return max(1, int((trendSpan/trendWidth+t.interval/2)/t.interval))
}

// bucket is the sum of a backend's samples over one mark.
type bucket struct {
	ok      bool
	seconds float64
	claims  uint64
	wait    float64
	errors  uint64
}

func (b bucket) value(k trendKind) (float64, bool) {
	switch {
	case !b.ok:
		return 0, false
	case k == trendRate:
		return float64(b.claims) / max(b.seconds, 1e-9), true
	case k == trendWait:
		if b.claims == 0 {
			return 0, false
		}
		return b.wait / float64(b.claims), true
	}
	return float64(b.errors), true
}

// buckets returns the last n marks of the backend with key k, oldest
// first. The marks are fixed spans of polls, so they do not shift as
// polls come in; the last is the one filling now.
func (t *top) buckets(key string, n int) []bucket {
	out := make([]bucket, n)
	h := t.history[key]
	if h == nil {
		return out
	}
	per := t.bucketPolls()
	last := t.polls / per
	for i, s := range h.samples {
		if !s.ok {
			continue
		}
		j := n - 1 - (last - (h.first+i)/per)
		if j < 0 {
			continue
		}
		b := &out[j]
		b.ok = true
		b.seconds += s.seconds
		b.claims += s.claims
		b.wait += s.wait
		b.errors += s.errors
	}
	return out
}

// sparkMarks are a sparkline's levels, lowest first.
var sparkMarks = []rune("▁▂▃▄▅▆▇█")

// trendTop is the highest value of kind k in the last width marks of any
// backend: the top of every sparkline of that kind, so that backends
// compare.
func (t *top) trendTop(k trendKind, width int) float64 {
	var top float64
	for key := range t.history {
		for _, b := range t.buckets(key, width) {
			if v, ok := b.value(k); ok {
				top = max(top, v)
			}
		}
	}
	return top
}

// sparkline draws one backend's trend of kind k in width marks, top
// being the highest mark; a gap is a space. Errors are red.
func (t *top) sparkline(r topRow, k trendKind, width int, top float64) string {
	var s strings.Builder
	if k == trendErrors {
		s.WriteString("\x1b[31m")
	}
	for _, b := range t.buckets(backendKey(r.b), width) {
		v, ok := b.value(k)
		switch {
		case !ok:
			s.WriteByte(' ')
		case v <= 0 || top <= 0:
			s.WriteRune(sparkMarks[0])
		default:
			// Anything above zero shows above the floor.
			s.WriteRune(sparkMarks[1+min(len(sparkMarks)-2, int(v/top*float64(len(sparkMarks)-1)))])
		}
	}
	if k == trendErrors {
		s.WriteString("\x1b[39m")
	}
	return s.String()
}
