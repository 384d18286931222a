// Package pool keeps connections to the backends of a service: one slot set
// per backend, each slot an explicit state machine.
//
// A [Pool] learns its backends from a [resolver.Resolver], opens
// connections through a [Connector] the caller supplies, health-checks idle
// connections, cleans connections when a claim comes back, and spreads
// claims over backends by load and weight. It knows nothing of SQL or DNS
// and is generic over the connection type C.
//
// # Goroutines
//
// A pool runs two goroutines of its own: the control loop (timers,
// rebalancing, resolver updates) and the resolver's Run. It runs none per
// backend and none per idle slot; a slot borrows a short-lived goroutine
// only while it connects, is health-checked, is recycled in the background
// or is closed. Claims and releases run on the caller's goroutine and never
// do I/O under a lock.
//
// # Claims
//
// [Pool.Claim] hands out an idle connection at once when there is one, or
// waits first-come first-served until one is free, the claim timeout
// passes or ctx ends. Every claim must end with [Claim.Release] or
// [Claim.Discard].
package pool
