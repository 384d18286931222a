package resolver

import (
	"context"
	"errors"
	"sync"
)

// Join returns a resolver that reports the union of what rs report: for a
// service that publishes its primary and its replicas under separate
// names, say. A backend two of them report is reported once, as the first
// of them reports it. The joint set is reported each time one of them
// reports; until each has reported once, the joint set holds what those
// that have report. A lookup of one of them that fails is reported as it
// happens, joined with the failures still standing of the others, once
// each of rs has been heard from; a report of nil confirms the joint set
// only when none of them is failing. Run returns when ctx ends, or when
// one of rs fails, having stopped the others.
func Join(rs ...Resolver) Resolver { return joined(rs) }

type joined []Resolver

// joint is the state a joined resolver's Run keeps of its members.
type joint struct {
	mu    sync.Mutex // serializes rc's methods, as Run's contract asks
	rc    Receiver
	sets  [][]Backend
	errs  []error // each member's last report
	heard []bool  // the member has reported a set or a lookup
}

// update takes member i's new set and reports the union.
func (j *joint) update(i int, bs []Backend) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.sets[i], j.heard[i] = bs, true
	seen := map[Key]bool{}
	var all []Backend
	for _, set := range j.sets {
		for _, b := range set {
			if !seen[b.Key()] {
				seen[b.Key()] = true
				all = append(all, b)
			}
		}
	}
	j.rc.Update(all)
}

// report takes member i's lookup outcome and reports what all of them
// say, once each has been heard from.
func (j *joint) report(i int, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.errs[i], j.heard[i] = err, true
	for _, h := range j.heard {
		if !h {
			return
		}
	}
	j.rc.Report(errors.Join(j.errs...))
}

// member is the Receiver a joined resolver gives its member i.
type member struct {
	j *joint
	i int
}

func (m member) Update(bs []Backend) { m.j.update(m.i, bs) }
func (m member) Report(err error)    { m.j.report(m.i, err) }

func (j joined) Run(parent context.Context, rc Receiver) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	st := &joint{rc: rc, sets: make([][]Backend, len(j)), errs: make([]error, len(j)), heard: make([]bool, len(j))}
	var wg sync.WaitGroup
	errs := make([]error, len(j))
	for i, r := range j {
		wg.Go(func() {
			errs[i] = r.Run(ctx, member{st, i})
			cancel() // one stopped: stop the others
		})
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.New("resolver: a joined resolver stopped")
}
