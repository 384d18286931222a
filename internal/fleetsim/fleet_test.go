package fleetsim

import (
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
)

var (
	fleetFlag = flag.Bool("fleet", false, "run the fleet simulation (TestFleet)")
	pools     = flag.Int("fleet.pools", 1000, "pools in the fleet")
	scenarios = flag.String("fleet.scenario", "all", "comma-separated scenarios to run: steady, restart, blackhole, add, remove, dns, or all")
	verbose   = flag.Bool("fleet.v", false, "print each scenario's timeline, one line per second")
	workers   = flag.Int("fleet.workers", 0, "workers per pool (0: the default, 4)")
	hold      = flag.Duration("fleet.hold", 0, "mean time a worker holds a claim (0: the default, 100ms)")
	think     = flag.Duration("fleet.think", 0, "mean time a worker waits between claims (0: the default, 300ms)")
	seed      = flag.Uint64("fleet.seed", 1, "seed of the fakes' random draws")
)

// TestFleet runs the fleet simulation and prints its figures. It runs
// only with -fleet; see the package documentation.
func TestFleet(t *testing.T) {
	if !*fleetFlag {
		t.Skip("the fleet simulation runs only with -fleet")
	}
	var run []Scenario
	for _, sc := range Scenarios() {
		if *scenarios == "all" || slices.Contains(strings.Split(*scenarios, ","), sc.Name) {
			run = append(run, sc)
		}
	}
	if len(run) == 0 {
		t.Fatalf("-fleet.scenario=%s names no scenario", *scenarios)
	}
	cfg := Config{Pools: *pools, Workers: *workers, Hold: *hold, Think: *think, Seed: *seed}
	reports := make([]*Report, len(run))
	// The scenarios run in parallel, as many at once as -parallel
	// allows (by default one per CPU): a bubble mostly runs one
	// goroutine at a time.
	t.Run("scenarios", func(t *testing.T) {
		for i, sc := range run {
			t.Run(sc.Name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				synctest.Test(t, func(t *testing.T) {
					var err error
					if reports[i], err = Run(cfg, sc); err != nil {
						t.Fatal(err)
					}
				})
				t.Logf("%s; took %v", reports[i].Summary, time.Since(start).Round(time.Second))
			})
		}
	})
	if t.Failed() {
		return
	}
	if *verbose {
		for _, r := range reports {
			if err := r.WriteTimeline(os.Stdout); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := WriteTable(os.Stdout, reports); err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if !r.Violations.None() {
			t.Errorf("%s: %+v", r.Scenario, r.Violations)
		}
	}
}

// TestFleetSmoke runs every scenario with a small fleet and short phases
// and checks only what must never happen, so that the simulation keeps
// working as the pool changes.
func TestFleetSmoke(t *testing.T) {
	// Faults last longer than a connection attempt's timeout, so that a
	// blackholed backend goes offline.
	cfg := Config{
		Pools:   10,
		Stagger: time.Second,
		Timing:  Timing{Warmup: 3 * time.Second, Fault: 12 * time.Second, After: 6 * time.Second},
	}
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				r, err := Run(cfg, sc)
				if err != nil {
					t.Fatal(err)
				}
				if !r.Violations.None() {
					t.Errorf("violations: %+v", r.Violations)
				}
				if len(r.Figures) == 0 {
					t.Error("no figures")
				}
				var claims int64
				for _, b := range r.fleet.backends {
					for s := range b.claims {
						claims += b.claims.at(s)
					}
				}
				if claims == 0 {
					t.Error("no claims served")
				}
			})
		})
	}
}

func TestFleetBadPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, err := Run(Config{Pools: 2, Policy: pool.Policy{MaxSlots: -1}}, steady)
		if !errors.Is(err, pool.ErrBadPolicy) {
			t.Errorf("Run with a bad policy = %v, want %v", err, pool.ErrBadPolicy)
		}
	})
}
