package hastack

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/internal/dbtest"
)

// monitorInterval is how often the monitor asks every node its role.
const monitorInterval = 50 * time.Millisecond

// sample is what one node answered at one time: whether it was a replica
// that took queries.
type sample struct {
	at      time.Time
	replica bool
}

// monitor asks every node, directly and on a connection of its own, whether
// it is in recovery, every monitorInterval, so that the figures can tell a
// read that failed while a replica was serving from one that failed while
// the cluster had none (Patroni restarts a replica now and then while it
// follows a new leader).
type monitor struct {
	dbs     []*sql.DB
	samples [][]sample // per node; written by its goroutine until stop returns
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	// stalls are the stretches during which this process itself got no
	// CPU for more than stallLimit (its ticker fired that late), written
	// by the ticking goroutine until stop returns.
	stalls []span
}

// span is a stretch of time.
type span struct{ from, to time.Time }

// stallLimit is how late the monitor's own ticker must fire for the
// stretch to count as a stall of the test process: the machine's other
// work, not the code under test, held it up.
const stallLimit = 500 * time.Millisecond

// startMonitor starts polling the nodes.
func startMonitor(t testing.TB, nodes []*dbtest.PatroniNode) *monitor {
	t.Helper()
	m := &monitor{done: make(chan struct{}), samples: make([][]sample, len(nodes))}
	for i, nd := range nodes {
		db := openDB(t, "pgx", nd.DSN()+" connect_timeout=1")
		db.SetMaxOpenConns(1)
		m.dbs = append(m.dbs, db)
		m.wg.Go(func() {
			tick := time.NewTicker(monitorInterval)
			defer tick.Stop()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), monitorInterval*4)
				var in bool
				err := db.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&in)
				cancel()
				m.samples[i] = append(m.samples[i], sample{time.Now(), err == nil && in})
				select {
				case <-m.done:
					return
				case <-tick.C:
				}
			}
		})
	}
	m.wg.Go(func() {
		tick := time.NewTicker(monitorInterval)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-m.done:
				return
			case now := <-tick.C:
				if now.Sub(last) > stallLimit {
					m.stalls = append(m.stalls, span{last, now})
				}
				last = now
			}
		}
	})
	return m
}

// stalled reports whether the test process stalled (see stallLimit)
// between from and to. Call it after stop.
func (m *monitor) stalled(from, to time.Time) bool {
	for _, st := range m.stalls {
		if st.from.Before(to) && st.to.After(from) {
			return true
		}
	}
	return false
}

// stallTime returns how long the test process stalled after from. Call it
// after stop.
func (m *monitor) stallTime(from time.Time) time.Duration {
	var total time.Duration
	for _, st := range m.stalls {
		if st.to.After(from) {
			total += st.to.Sub(later(st.from, from))
		}
	}
	return total
}

// stop stops polling and closes the monitor's connections. It may be
// called more than once.
func (m *monitor) stop() {
	m.once.Do(func() {
		close(m.done)
		m.wg.Wait()
		for _, db := range m.dbs {
			db.Close()
		}
	})
}

// replicaUp reports whether one node answered as a replica at every poll
// from the last one before from to the first one after to: whether a
// replica was serving throughout. Call it after stop.
func (m *monitor) replicaUp(from, to time.Time) bool {
	for _, ss := range m.samples {
		first := 0
		for first < len(ss) && !ss[first].at.After(from) {
			first++
		}
		if first == 0 {
			continue // no poll before from
		}
		up := true
		for i := first - 1; i < len(ss); i++ {
			if !ss[i].replica {
				up = false
				break
			}
			if ss[i].at.After(to) {
				break
			}
		}
		if up && ss[len(ss)-1].at.After(to) {
			return true
		}
	}
	return false
}

// noReplica returns the total time after from during which no node
// answered as a replica. Call it after stop.
func (m *monitor) noReplica(from time.Time) time.Duration {
	// Merge every node's polls into one timeline of each node's latest
	// answer.
	type change struct {
		at      time.Time
		node    int
		replica bool
	}
	var changes []change
	for n, ss := range m.samples {
		for _, s := range ss {
			changes = append(changes, change{s.at, n, s.replica})
		}
	}
	slices.SortFunc(changes, func(a, b change) int { return a.at.Compare(b.at) })
	state := make([]bool, len(m.samples))
	var total time.Duration
	var downSince time.Time
	for _, c := range changes {
		state[c.node] = c.replica
		any := slices.Contains(state, true)
		switch {
		case !any && downSince.IsZero():
			downSince = c.at
		case any && !downSince.IsZero():
			if c.at.After(from) {
				total += c.at.Sub(later(downSince, from))
			}
			downSince = time.Time{}
		}
	}
	return total
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
