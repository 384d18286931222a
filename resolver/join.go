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
// that have report. Run returns when ctx ends, or when one of rs fails, having
// stopped the others.
func Join(rs ...Resolver) Resolver { return joined(rs) }

type joined []Resolver

func (j joined) Run(parent context.Context, update func([]Backend)) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		mu   sync.Mutex // serializes update, as Run's contract asks
		sets = make([][]Backend, len(j))
		wg   sync.WaitGroup
		errs = make([]error, len(j))
	)
	for i, r := range j {
		wg.Go(func() {
			errs[i] = r.Run(ctx, func(bs []Backend) {
				mu.Lock()
				defer mu.Unlock()
				sets[i] = bs
				seen := map[Key]bool{}
				var all []Backend
				for _, set := range sets {
					for _, b := range set {
						if !seen[b.Key()] {
							seen[b.Key()] = true
							all = append(all, b)
						}
					}
				}
				update(all)
			})
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
