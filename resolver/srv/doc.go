// Package srv finds the backends of a service in DNS SRV records
// (RFC 2782), with a DNS client of its own (github.com/miekg/dns) rather
// than the system's resolver, so that it sees every record, its TTL and
// each name server's failure.
//
// A [Resolver] is a [resolver.Resolver]: give it to a pool, or call
// [Resolver.Resolve] or [Resolver.Lookup] for one answer. Its [Config]
// says which name servers to ask and how often, and who is told of each
// lookup ([Event]).
//
// It lives apart from package resolver so that programs that list their
// backends, and the pool itself, do not link a DNS client.
package srv
