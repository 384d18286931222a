package srv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// lookupResult is the outcome of one lookup that got an answer.
type lookupResult struct {
	records []Record
	// ttl is the shortest TTL among the records, or how long the negative
	// answer may be cached when there are none.
	ttl time.Duration
	// empty says why records is empty: it wraps ErrNoSuchName,
	// ErrNoRecords, ErrUnavailable or ErrNoAddresses. Nil otherwise.
	empty error
	// partial is set when some targets' addresses could not be looked up
	// and were not known from before: those targets are missing.
	partial error
	// server is the name server that answered the SRV question.
	server string
	// addrs are the addresses used for each target, to fall back on when
	// the next lookup cannot get them.
	addrs map[string][]addrRR
}

// lookup asks for the SRV records of s.name and the addresses of their
// targets. known holds the addresses of the previous lookup, used for a
// target whose addresses cannot be looked up now. It fails with a
// *LookupError when no name server answers the SRV question usefully, or
// when it has targets but could look up none of their addresses.
func (s *Resolver) lookup(ctx context.Context, known map[string][]addrRR) (lookupResult, error) {
	n := &notes{on: s.listening()}
	defer s.flush(n)

	msg, server, err := s.ask(ctx, s.name, dns.TypeSRV, n)
	if err != nil {
		return lookupResult{}, err
	}
	res := lookupResult{server: server}
	if msg.Rcode == dns.RcodeNameError {
		res.ttl = negativeTTL(msg)
		res.empty = &emptyError{s.name, server, "NXDOMAIN (no such name)", ErrNoSuchName}
		return res, nil
	}
	ans := parseSRV(msg, s.name, s.cfg.MaxBackends)
	switch {
	case ans.unavailable:
		res.ttl = seconds(minTTL(msg.Answer))
		res.empty = &emptyError{s.name, server, "service not available (the single target \".\")", ErrUnavailable}
		return res, nil
	case len(ans.targets) == 0:
		res.ttl = negativeTTL(msg)
		res.empty = &emptyError{s.name, server, "no SRV records", ErrNoRecords}
		return res, nil
	}
	if ans.capped {
		n.add(Event{Kind: EventCapped, Name: s.name, Server: server,
			Err: fmt.Errorf("resolver: SRV answer for %s from %s has more records than the caps allow", s.name, server)})
	}

	// Addresses: from the additional section, else asked for.
	res.addrs = make(map[string][]addrRR, len(ans.targets))
	var missing []string
	for _, t := range ans.targets {
		if _, done := res.addrs[t.host]; done {
			continue
		}
		if list := ans.extra[t.host]; len(list) > 0 {
			res.addrs[t.host] = list
			continue
		}
		res.addrs[t.host] = nil
		missing = append(missing, t.host)
	}
	var failed []error
	for _, h := range s.lookupHosts(ctx, missing, n) {
		if ctx.Err() != nil {
			return lookupResult{}, ctx.Err()
		}
		res.addrs[h.host] = h.addrs
		if h.err == nil {
			continue
		}
		// Keep what the last lookup knew of the family that failed.
		for _, a := range known[h.host] {
			if (a.ip.Is4() && h.failed4) || (a.ip.Is6() && h.failed6) {
				res.addrs[h.host] = append(res.addrs[h.host], a)
			}
		}
		if len(res.addrs[h.host]) == 0 {
			failed = append(failed, h.err)
		}
		if h.capped {
			n.add(Event{Kind: EventCapped, Name: s.name,
				Err: fmt.Errorf("resolver: %s has more addresses than the caps allow", h.host)})
		}
	}
	for h, list := range res.addrs {
		if len(list) == 0 {
			delete(res.addrs, h)
		}
	}

	recs, ttl, capped := assemble(ans.targets, res.addrs, s.cfg.Role, s.cfg.MaxBackends)
	if capped {
		n.add(Event{Kind: EventCapped, Name: s.name, Server: server,
			Err: fmt.Errorf("resolver: %s has more than %d backends", s.name, s.cfg.MaxBackends)})
	}
	res.records, res.ttl = recs, ttl
	if len(failed) > 0 {
		res.partial = errors.Join(failed...)
	}
	if len(recs) == 0 {
		if res.partial != nil {
			return lookupResult{}, res.partial
		}
		res.ttl = seconds(minTTL(msg.Answer))
		res.empty = &emptyError{s.name, server, "no SRV target has an address", ErrNoAddresses}
	}
	return res, nil
}

// hostAddrs is the outcome of looking up one target's addresses.
type hostAddrs struct {
	host             string
	addrs            []addrRR
	err              error // the A or AAAA question failed
	failed4, failed6 bool
	capped           bool
}

// lookupHosts asks for the A and AAAA records of each host, a few hosts at
// once, and returns when every question has ended.
func (s *Resolver) lookupHosts(ctx context.Context, hosts []string, n *notes) []hostAddrs {
	out := make([]hostAddrs, len(hosts))
	if len(hosts) == 0 {
		return out
	}
	workers := min(len(hosts), maxAddrLookups)
	perWorker := make([]notes, workers)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := range workers {
		perWorker[w].on = n.on
		wg.Go(func() {
			for i := range next {
				out[i] = s.lookupHost(ctx, hosts[i], &perWorker[w])
			}
		})
	}
feed:
	for i := range hosts {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for w := range perWorker {
		n.events = append(n.events, perWorker[w].events...)
	}
	return out
}

// lookupHost asks for the A and then the AAAA records of host.
func (s *Resolver) lookupHost(ctx context.Context, host string, n *notes) hostAddrs {
	h := hostAddrs{host: host}
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		msg, _, err := s.ask(ctx, host, qtype, n)
		if err != nil {
			errs = append(errs, err)
			if qtype == dns.TypeA {
				h.failed4 = true
			} else {
				h.failed6 = true
			}
			if ctx.Err() != nil {
				break
			}
			continue
		}
		list, capped := parseAddrs(msg, host, qtype)
		h.addrs = append(h.addrs, list...)
		h.capped = h.capped || capped
	}
	h.err = errors.Join(errs...)
	return h
}

// minTTL returns the smallest TTL of rrs, or 0 if there are none.
func minTTL(rrs []dns.RR) uint32 {
	var m uint32
	for i, rr := range rrs {
		if t := rr.Header().Ttl; i == 0 || t < m {
			m = t
		}
	}
	return m
}
