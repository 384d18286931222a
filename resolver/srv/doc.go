// Package srv finds the backends of a service in DNS SRV records
// (RFC 2782), with a DNS client of its own (github.com/miekg/dns) rather
// than the system's resolver, so that it sees every record, its TTL and
// each name server's failure.
//
// A [Resolver] is a [resolver.Resolver]: give it to a pool, or call
// [Resolver.Resolve] or [Resolver.Lookup] for one answer. Its [Config]
// says which name servers to ask and how often; the [Observer] in
// Config.Observer is told of each change in the backend set and each DNS
// failure ([Event]), and [LogEvents] logs them, as package pool's
// observers do for a pool.
//
// It lives apart from package resolver so that the pool, which needs only
// the backend types, does not link a DNS client.
package srv
