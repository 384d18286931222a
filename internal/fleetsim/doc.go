// Package fleetsim simulates a fleet of pools sharing one cluster, to
// measure how [pool.Pool] behaves as one instance among a thousand.
//
// A [Fleet] runs N pools, each with its default [pool.Policy], its own
// resolver over one fake DNS shared by all, its own connector over fake
// backends shared by all, and a few workers that claim, hold, release and
// think. A scenario scripts events against the cluster (a backend
// restarts, is blackholed, is added to or removed from DNS, DNS fails)
// while the fleet counts, second by second, what the fake backends see:
// connection attempts, connections opened and closed, claims served. From
// those series a scenario computes its figures and compares them with
// their goals.
//
// Everything runs on virtual time: [Run] must be called inside a
// testing/synctest bubble. A simulated minute of 1,000 pools costs about
// half a minute of CPU, most of it in the pools.
// The simulation uses only the exported API of the pool and resolver
// packages. The fakes draw their latencies from seeded generators, but the
// pool's own jitter and the scheduler are not seeded, so two runs give
// close figures, not equal ones.
//
// The simulation runs as a test, only when asked, and prints a table of
// its figures (with -fleet.v, also what the backends saw second by
// second):
//
//	go test ./internal/fleetsim -run 'TestFleet$' -fleet -v -timeout 60m
//
// Flags choose the scenarios (-fleet.scenario=restart,blackhole), the
// number of pools (-fleet.pools, default 1,000) and the workers'
// behaviour. The scenarios run in parallel, as -parallel allows. The
// default test run has only a small version of every scenario, which
// checks nothing but the invariants below.
//
// The simulation also checks, in every scenario, what must never happen:
// a pool holding more connections than its caps allow (connections being
// closed included), a connection handed to two users at once or used after
// it was closed, and claims or connections that are never given back.
package fleetsim
