//go:build unix

package main

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qorb-go/qorb/statshttp"
)

// The backends' table of "qorb top" fits the terminal: each column has a
// priority, and a narrower screen drops the columns of least priority
// first. The backend cell always shows the address (the table sorts by
// it), and its host name too where there is room. An offline backend's
// last error is always on screen: in the LAST ERROR column when it fits
// there, else on a line of its own under the backend's row.

// topCol is one column of the backends' table.
type topCol struct {
	name  string
	right bool // right-aligned (numbers)
	sort  string
	trend trendKind // a sparkline column, or trendNone
	cell  func(t *top, r topRow) string
}

// topColumns are the table's columns in the order they are shown.
var topColumns = []topCol{
	{name: "BACKEND", sort: "address"},
	{name: "ROLE", cell: func(_ *top, r topRow) string { return r.b.Role }},
	{name: "HEALTH", cell: func(_ *top, r topRow) string {
		h := r.b.Health
		if r.b.Drained {
			h = "drained"
		}
		if r.b.Suspect {
			return h + "?"
		}
		return h
	}},
	{name: "CONN", right: true, cell: func(_ *top, r topRow) string { return strconv.Itoa(r.b.Slots.Connecting) }},
	{name: "IDLE", right: true, cell: func(_ *top, r topRow) string { return strconv.Itoa(r.b.Slots.Idle) }},
	{name: "CHECK", right: true, cell: func(_ *top, r topRow) string { return strconv.Itoa(r.b.Slots.Checking) }},
	{name: "CLAIMED", right: true, cell: func(_ *top, r topRow) string { return strconv.Itoa(r.b.Slots.Claimed) }},
	{name: "RECYC", right: true, cell: func(_ *top, r topRow) string { return strconv.Itoa(r.b.Slots.Recycling) }},
	{name: "BACKOFF", right: true, cell: func(_ *top, r topRow) string { return strconv.Itoa(r.b.Slots.BackingOff) }},
	{name: "CLAIMS/S", right: true, sort: "claims/s", cell: func(_ *top, r topRow) string { return rateString(r.rate, r.rate >= 0) }},
	{name: "WAIT", right: true, sort: "wait", cell: func(_ *top, r topRow) string {
		if r.wait < 0 {
			return "-"
		}
		return durString(r.wait)
	}},
	{name: "OLDEST", right: true, cell: func(_ *top, r topRow) string { return durString(r.b.OldestClaimSeconds) }},
	{name: "ERRORS", right: true, sort: "errors", cell: func(_ *top, r topRow) string { return strconv.FormatUint(r.errors, 10) }},
	{name: "CLAIMS/S TREND", trend: trendRate},
	{name: "WAIT TREND", trend: trendWait},
	{name: "ERRORS TREND", trend: trendErrors},
}

// topPriority lists the columns, and the host names in the backend
// cell, in the order they are given room: a narrower screen drops the
// last first. Without the LAST ERROR column, an offline backend's error
// gets its own line.
var topPriority = []string{"BACKEND", "HEALTH", "CLAIMS/S", "ERRORS", "WAIT", "ROLE", "CLAIMED", "IDLE",
	"CLAIMS/S TREND", "LAST ERROR", "OLDEST", "host names", "CONN", "BACKOFF", "ERRORS TREND", "WAIT TREND", "CHECK", "RECYC"}

// The narrowest LAST ERROR column worth having, and the widest it takes
// before the columns of less priority have room.
const lastErrorMin, lastErrorWant = 24, 60

// layout is how the table fits width columns: the columns shown, their
// widths, whether the backend cell has room for the host name, and the
// LAST ERROR column's width (0: none).
type layout struct {
	cols     []int // indexes in topColumns, in order
	widths   []int // by index in topColumns
	hostName bool
	errWidth int
	tops     map[trendKind]float64 // the top of each sparkline column
}

// backendName is the backend cell: "host addr" when full is set and the
// host is not the address's own, else the address.
func backendName(b *statshttp.Backend, full bool) string {
	if full && b.Host != "" && b.Host != b.Addr && !strings.HasPrefix(b.Addr, b.Host+":") {
		return b.Host + " " + b.Addr
	}
	return b.Addr
}

// layoutFor chooses the columns for rows on a screen width columns wide:
// by priority while they fit, each as wide as its widest cell.
func (t *top) layoutFor(rows []topRow, width int) layout {
	l := layout{widths: make([]int, len(topColumns))}
	nameWidth := func(full bool) int {
		w := len("BACKEND*")
		for _, r := range rows {
			w = max(w, runeLen(backendName(r.b, full)))
		}
		return w
	}
	for i, c := range topColumns {
		w := runeLen(c.name)
		if c.sort != "" {
			w++ // room for the sort mark
		}
		switch {
		case i == 0:
			w = nameWidth(false)
		case c.trend != trendNone:
			w = max(w, trendWidth)
		default:
			for _, r := range rows {
				w = max(w, runeLen(c.cell(t, r)))
			}
		}
		l.widths[i] = w
	}

	// Take the columns by priority, each with its space, while they fit.
	used := l.widths[0]
	shown := make([]bool, len(topColumns))
	errCol, reserved := false, 0
	for _, name := range topPriority {
		switch name {
		case "BACKEND":
			shown[0] = true
		case "LAST ERROR":
			// As wide as the longest error, up to lastErrorWant, if there
			// is room for that or for lastErrorMin; it gets what the
			// other columns leave too.
			want := 0
			for _, r := range rows {
				want = max(want, min(lastErrorWant, runeLen(t.lastError(r))))
			}
			if w := min(want, width-used-1); want > 0 && (w == want || w >= lastErrorMin) {
				errCol = true
				reserved = w
				used += 1 + w
			}
		case "host names":
			if extra := nameWidth(true) - l.widths[0]; extra > 0 && used+extra <= width {
				l.hostName = true
				l.widths[0] += extra
				used += extra
			}
		default:
			i := slices.IndexFunc(topColumns, func(c topCol) bool { return c.name == name })
			if used+1+l.widths[i] <= width {
				shown[i] = true
				used += 1 + l.widths[i]
			}
		}
	}
	for i := range topColumns {
		if shown[i] {
			l.cols = append(l.cols, i)
		}
	}
	if errCol {
		l.errWidth = reserved + width - used
	}
	l.tops = map[trendKind]float64{}
	for _, i := range l.cols {
		if k := topColumns[i].trend; k != trendNone {
			l.tops[k] = t.trendTop(k, l.widths[i])
		}
	}
	return l
}

// tableLines are the table's header, its rows, each offline backend's
// last error on a line of its own when it does not fit in the row, and
// the legend.
func (t *top) tableLines(rows []topRow, width int) []string {
	l := t.layoutFor(rows, width)
	lines := []string{t.header(l)}
	for _, r := range rows {
		row, errLine := t.row(r, l)
		lines = append(lines, row)
		if errLine != "" {
			// Under the row, indented, wrapped to the screen.
			for i, part := range wrap(errLine, width-4, 4) {
				lead := "    "
				if i == 0 {
					lead = "  └ "
				}
				lines = append(lines, lead+"\x1b[31m"+part+"\x1b[39m")
			}
		}
	}
	return append(lines, wrap(t.legend(l), width, 3)...)
}

// topLegend explains the health column and, when shown, the sparklines.
func (t *top) legend(l layout) string {
	s := "\x1b[2mhealth: offline = connection attempts failed in a row: claims no longer wait for it, one slot keeps probing;" +
		" ? = suspect: a connection to it failed lately, its idle ones are re-checked;" +
		" drained = taken out of service: no new claims, its last connections close as they come back"
	for _, i := range l.cols {
		if topColumns[i].trend != trendNone {
			bucket := time.Duration(t.bucketPolls()) * t.interval
			s += "; trends: the last " + agoString(trendWidth*bucket) + ", one mark per " + agoString(bucket)
			break
		}
	}
	return s + "\x1b[22m"
}

// header is the table's header line; the sort column is marked with *
// and shown reversed.
func (t *top) header(l layout) string {
	var b strings.Builder
	b.WriteString("\x1b[1m")
	for k, i := range l.cols {
		c := topColumns[i]
		name := c.name
		sorted := c.sort != "" && c.sort == topSorts[t.sort]
		if sorted {
			name += "*"
		}
		cell := pad(name, l.widths[i], c.right)
		if sorted {
			cell = "\x1b[7m" + cell + "\x1b[27m"
		}
		if k > 0 {
			b.WriteString(" ")
		}
		b.WriteString(cell)
	}
	if l.errWidth > 0 {
		b.WriteString(" LAST ERROR")
	}
	b.WriteString("\x1b[0m")
	return b.String()
}

// row is one backend's line, and the text of its error line: an offline
// backend's last error that the row has no room for.
func (t *top) row(r topRow, l layout) (line, errLine string) {
	lastErr := t.lastError(r)
	var out strings.Builder
	for k, i := range l.cols {
		c := topColumns[i]
		var cell string
		switch {
		case i == 0:
			cell = pad(backendName(r.b, l.hostName), l.widths[i], false)
		case c.trend != trendNone:
			cell = t.sparkline(r, c.trend, l.widths[i], l.tops[c.trend])
		default:
			cell = pad(c.cell(t, r), l.widths[i], c.right)
		}
		if c.name == "HEALTH" {
			cell = healthColor(r.b.Health) + cell + "\x1b[39m"
		}
		if k > 0 {
			out.WriteString(" ")
		}
		out.WriteString(cell)
	}
	offline := r.b.Health == "offline"
	switch {
	case lastErr == "":
	case l.errWidth > 0 && (runeLen(lastErr) <= l.errWidth || !offline):
		out.WriteString(" \x1b[31m" + truncate(lastErr, l.errWidth) + "\x1b[39m")
	case offline:
		errLine = lastErr
	}
	return out.String(), errLine
}

// lastError is a backend's last error, with how long ago it happened.
func (t *top) lastError(r topRow) string {
	if r.b.LastError == "" || r.b.LastErrorAt == nil {
		return r.b.LastError
	}
	return agoString(t.cur.Time.Sub(*r.b.LastErrorAt)) + " ago: " + r.b.LastError
}

// wrap cuts s, which may hold escape sequences, into lines of at most
// width visible runes, at spaces where it can, keeping at most n lines
// (the last ending in … if text was left over).
func wrap(s string, width, n int) []string {
	if width <= 1 {
		return []string{s}
	}
	var lines []string
	for len(lines) < n {
		if visibleLen(s) <= width {
			return append(lines, s)
		}
		cut := cutAt(s, width)
		if len(lines) == n-1 {
			return append(lines, clip(s, width-1)+"…")
		}
		lines = append(lines, strings.TrimRight(s[:cut], " "))
		s = strings.TrimLeft(s[cut:], " ")
		if s == "" {
			break
		}
	}
	return lines
}

// cutAt returns the byte offset at which to end a line of at most width
// visible runes of s: after the last space within them, or at width.
func cutAt(s string, width int) int {
	visible, lastSpace, esc := 0, -1, false
	for i, r := range s {
		switch {
		case esc:
			if r >= '@' && r <= '~' && r != '[' {
				esc = false
			}
			continue
		case r == '\x1b':
			esc = true
			continue
		}
		if visible == width {
			if lastSpace > 0 {
				return lastSpace
			}
			return i
		}
		if r == ' ' {
			lastSpace = i
		}
		visible++
	}
	return len(s)
}

// visibleLen counts the runes of s outside escape sequences.
func visibleLen(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case esc:
			if r >= '@' && r <= '~' && r != '[' {
				esc = false
			}
		case r == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}

func runeLen(s string) int { return len([]rune(s)) }
