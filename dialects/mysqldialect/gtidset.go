package mysqldialect

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// gtidSet is a MySQL GTID set, such as @@gtid_executed: for each source,
// the transaction numbers it holds, as sorted intervals that neither
// overlap nor touch.
type gtidSet map[gtidSource][]interval

// gtidSource is a server UUID, in lower case with dashes, and a tag (MySQL
// 8.3 and later; empty for untagged transactions), in lower case.
type gtidSource struct{ uuid, tag string }

// interval is the transaction numbers lo to hi, both included.
type interval struct{ lo, hi uint64 }

// isGTIDSet reports whether pos is written as a MySQL GTID set, whose
// sources and numbers are separated by colons, rather than as a MariaDB
// GTID position.
func isGTIDSet(pos string) bool { return strings.Contains(pos, ":") }

// parseGTIDSet parses a MySQL GTID set: "uuid:1-5:7,uuid2:tag:1-3", with
// white space allowed around each comma-separated part, as MySQL writes a
// newline after each comma. The empty set is empty text.
func parseGTIDSet(s string) (gtidSet, error) {
	set := gtidSet{}
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		fields := strings.Split(strings.TrimSpace(part), ":")
		uuid, ok := normalUUID(fields[0])
		if !ok || len(fields) < 2 {
			return nil, fmt.Errorf("%w: %q is not a MySQL GTID set", ErrBadPosition, s)
		}
		src := gtidSource{uuid: uuid}
		needInterval := false // after a tag
		for _, f := range fields[1:] {
			if iv, ok := parseInterval(f); ok {
				set[src] = append(set[src], iv)
				needInterval = false
				continue
			}
			tag, ok := normalTag(f)
			if !ok || needInterval {
				return nil, fmt.Errorf("%w: %q is not a MySQL GTID set", ErrBadPosition, s)
			}
			src.tag, needInterval = tag, true
		}
		if needInterval {
			return nil, fmt.Errorf("%w: %q is not a MySQL GTID set", ErrBadPosition, s)
		}
	}
	for src, ivs := range set {
		set[src] = merge(ivs)
	}
	return set, nil
}

// contains reports whether every transaction of want is in s.
func (s gtidSet) contains(want gtidSet) bool {
	for src, wivs := range want {
		have := s[src]
		for _, w := range wivs {
			// The first interval of have that ends at or after w starts
			// must hold all of w, as have's intervals do not touch.
			i, _ := slices.BinarySearchFunc(have, w.lo, func(h interval, lo uint64) int {
				if h.hi < lo {
					return -1
				}
				return 1
			})
			if i == len(have) || have[i].lo > w.lo || have[i].hi < w.hi {
				return false
			}
		}
	}
	return true
}

// merge sorts ivs and joins those that overlap or touch.
func merge(ivs []interval) []interval {
	slices.SortFunc(ivs, func(a, b interval) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if last.hi == math.MaxUint64 || iv.lo <= last.hi+1 {
			last.hi = max(last.hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// parseInterval parses "n" or "n-m", with 1 <= n <= m.
func parseInterval(f string) (interval, bool) {
	lo, hi, isRange := strings.Cut(f, "-")
	if !isRange {
		hi = lo
	}
	if !decimal(lo) || !decimal(hi) {
		return interval{}, false
	}
	l, err1 := strconv.ParseUint(lo, 10, 64)
	h, err2 := strconv.ParseUint(hi, 10, 64)
	if err1 != nil || err2 != nil || l == 0 || h < l {
		return interval{}, false
	}
	return interval{l, h}, true
}

// normalUUID returns a UUID written 8-4-4-4-12 in hexadecimal digits, in
// lower case.
func normalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}

// normalTag returns a GTID tag, a letter or underscore followed by up to 31
// letters, digits or underscores, in lower case, as MySQL compares them.
func normalTag(s string) (string, bool) {
	if len(s) == 0 || len(s) > 32 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}
