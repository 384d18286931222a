package srv

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/qorb-go/qorb/resolver"
)

// This file turns DNS answers into backends. Nothing here does I/O, and
// nothing trusts the answer: every record is checked, and every list is
// capped, so that a broken or hostile name server cannot make the resolver
// publish an undialable backend or hold on to unbounded memory.

// maxAliasHops caps how many CNAME records are followed inside one answer.
const maxAliasHops = 8

// srvTarget is one usable SRV record.
type srvTarget struct {
	host     string // fully qualified, lower case
	port     uint16
	priority uint16
	weight   uint16
	ttl      uint32
}

// addrRR is one usable address record.
type addrRR struct {
	ip  netip.Addr
	ttl uint32
}

// srvAnswer is what an SRV answer says.
type srvAnswer struct {
	targets     []srvTarget         // sorted by priority, host, port; capped
	unavailable bool                // only "." targets
	extra       map[string][]addrRR // addresses from the additional section, by target
	capped      bool                // records were left out
}

// parseSRV reads the SRV records for name (fully qualified, lower case)
// from m's answer section, and the addresses of their targets from its
// additional section. At most limit targets are kept.
func parseSRV(m *dns.Msg, name string, limit int) srvAnswer {
	var ans srvAnswer
	owners := aliases(m.Answer, name)
	dots := 0
	seen := make(map[string]int) // host:port → index in ans.targets
	for _, rr := range m.Answer {
		srv, ok := rr.(*dns.SRV)
		if !ok || srv.Hdr.Class != dns.ClassINET || !owners[strings.ToLower(srv.Hdr.Name)] {
			continue
		}
		host := strings.ToLower(dns.Fqdn(srv.Target))
		if host == "." {
			dots++
			continue
		}
		if srv.Port == 0 || !validHost(host) {
			continue
		}
		t := srvTarget{host: host, port: srv.Port, priority: srv.Priority, weight: srv.Weight, ttl: srv.Hdr.Ttl}
		key := host + ":" + strconv.Itoa(int(srv.Port))
		if i, dup := seen[key]; dup {
			// The same target and port twice: keep the better priority
			// and the shorter TTL.
			old := &ans.targets[i]
			if t.priority < old.priority || (t.priority == old.priority && t.weight > old.weight) {
				t.ttl = min(t.ttl, old.ttl)
				*old = t
			} else {
				old.ttl = min(t.ttl, old.ttl)
			}
			continue
		}
		if len(seen) >= 4*limit {
			// Far more than will be kept: stop reading.
			ans.capped = true
			break
		}
		seen[key] = len(ans.targets)
		ans.targets = append(ans.targets, t)
	}
	slices.SortFunc(ans.targets, func(a, b srvTarget) int {
		return cmp.Or(
			cmp.Compare(a.priority, b.priority),
			strings.Compare(a.host, b.host),
			cmp.Compare(a.port, b.port))
	})
	if len(ans.targets) > limit {
		ans.targets = ans.targets[:limit]
		ans.capped = true
	}
	ans.unavailable = len(ans.targets) == 0 && dots > 0

	// Addresses in the additional section, for the targets only.
	if len(ans.targets) > 0 && len(m.Extra) > 0 {
		hosts := make(map[string]bool, len(ans.targets))
		for _, t := range ans.targets {
			hosts[t.host] = true
		}
		for _, rr := range m.Extra {
			h := rr.Header()
			owner := strings.ToLower(h.Name)
			if !hosts[owner] || h.Class != dns.ClassINET {
				continue
			}
			a, ok := addrOf(rr)
			if !ok {
				continue
			}
			if ans.extra == nil {
				ans.extra = make(map[string][]addrRR)
			}
			if len(ans.extra[owner]) >= 4*maxAddrsPerTarget {
				ans.capped = true
				continue
			}
			ans.extra[owner] = append(ans.extra[owner], addrRR{ip: a, ttl: h.Ttl})
		}
		for host, list := range ans.extra {
			list, c := tidyAddrs(list)
			ans.extra[host] = list
			ans.capped = ans.capped || c
		}
	}
	return ans
}

// parseAddrs reads the addresses of host (fully qualified, lower case)
// from m's answer section: A records when qtype is dns.TypeA, AAAA
// records when it is dns.TypeAAAA, following CNAME records in the answer.
func parseAddrs(m *dns.Msg, host string, qtype uint16) (list []addrRR, capped bool) {
	owners := aliases(m.Answer, host)
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || h.Class != dns.ClassINET || !owners[strings.ToLower(h.Name)] {
			continue
		}
		a, ok := addrOf(rr)
		if !ok {
			continue
		}
		if len(list) >= 4*maxAddrsPerTarget {
			capped = true
			break
		}
		list = append(list, addrRR{ip: a, ttl: h.Ttl})
	}
	list, c := tidyAddrs(list)
	return list, capped || c
}

// addrOf returns the address of an A or AAAA record, if it is one a
// backend can be reached at.
func addrOf(rr dns.RR) (netip.Addr, bool) {
	var ip net.IP
	switch r := rr.(type) {
	case *dns.A:
		ip = r.A.To4()
	case *dns.AAAA:
		ip = r.AAAA.To16()
		if ip != nil && ip.To4() != nil {
			return netip.Addr{}, false // a mapped IPv4 address in an AAAA record
		}
	default:
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, false
	}
	return a, true
}

// tidyAddrs sorts list by address, merges duplicates (keeping the shorter
// TTL) and caps it.
func tidyAddrs(list []addrRR) ([]addrRR, bool) {
	slices.SortFunc(list, func(a, b addrRR) int { return a.ip.Compare(b.ip) })
	out := list[:0]
	for _, x := range list {
		if n := len(out); n > 0 && out[n-1].ip == x.ip {
			out[n-1].ttl = min(out[n-1].ttl, x.ttl)
			continue
		}
		out = append(out, x)
	}
	if len(out) > maxAddrsPerTarget {
		return out[:maxAddrsPerTarget], true
	}
	return out, false
}

// aliases returns name and the names it is an alias of through the CNAME
// records in rrs, all lower case. It stops at a loop or after
// maxAliasHops; checkAliases rejects such answers before they get here.
func aliases(rrs []dns.RR, name string) map[string]bool {
	names := map[string]bool{name: true}
	cur := name
	for range maxAliasHops {
		next := cnameOf(rrs, cur)
		if next == "" || names[next] {
			break
		}
		names[next] = true
		cur = next
	}
	return names
}

// cnameOf returns the target of the first CNAME record in rrs owned by
// name (lower case), lower case, or "" if there is none.
func cnameOf(rrs []dns.RR, name string) string {
	for _, rr := range rrs {
		if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Class == dns.ClassINET && strings.ToLower(c.Hdr.Name) == name {
			return strings.ToLower(dns.Fqdn(c.Target))
		}
	}
	return ""
}

// checkAliases reports why a NOERROR answer m to the question (name,
// qtype) cannot be followed, or nil: its CNAME records from name loop,
// the chain is longer than maxAliasHops, or it ends at a name for which
// the answer holds no record of qtype and says nothing (no SOA record in
// the authority section, which a true "no such record" answer carries).
// Taken as an empty answer, any of these would remove every backend.
func checkAliases(m *dns.Msg, name string, qtype uint16) error {
	cur := strings.ToLower(name)
	chain := []string{cur}
	for {
		next := cnameOf(m.Answer, cur)
		if next == "" {
			break
		}
		if slices.Contains(chain, next) {
			return fmt.Errorf("CNAME loop: %s", strings.Join(append(chain, next), " → "))
		}
		if len(chain) > maxAliasHops {
			return fmt.Errorf("CNAME chain from %s longer than %d", name, maxAliasHops)
		}
		chain = append(chain, next)
		cur = next
	}
	if len(chain) == 1 || m.Rcode != dns.RcodeSuccess {
		return nil
	}
	for _, rr := range m.Answer {
		if h := rr.Header(); h.Rrtype == qtype && strings.ToLower(h.Name) == cur {
			return nil
		}
	}
	for _, rr := range m.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return nil
		}
	}
	return fmt.Errorf("CNAME chain ends at %s, which the answer does not resolve", cur)
}

// validHost reports whether a target name (fully qualified, lower case)
// can be a Backend.Host: at most 253 characters without the final dot,
// in labels of letters, digits, '-' and '_'.
func validHost(host string) bool {
	if len(host) < 2 || len(host) > 254 || host[len(host)-1] != '.' {
		return false
	}
	label := 0
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c == '.':
			if label == 0 || label > 63 {
				return false
			}
			label = 0
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
		default:
			return false
		}
	}
	return true
}

// negativeTTL returns how long a negative answer may be cached: the
// smaller of the TTL and the minimum field of the SOA record in its
// authority section (RFC 2308), or 0 without one.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return seconds(min(soa.Hdr.Ttl, soa.Minttl))
		}
	}
	return 0
}

// seconds converts a TTL to a duration.
func seconds(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

// assemble makes the backends of targets from the addresses of each
// target host, at most limit of them, in the order of targets and then
// of addresses. It returns the records and the shortest TTL among them.
func assemble(targets []srvTarget, addrs map[string][]addrRR, role resolver.Role, limit int) (recs []Record, ttl time.Duration, capped bool) {
	seen := make(map[resolver.Key]bool)
	first := true
	for _, t := range targets {
		host := strings.TrimSuffix(t.host, ".")
		port := strconv.Itoa(int(t.port))
		for _, a := range addrs[t.host] {
			b := resolver.Backend{
				Host:     host,
				Addr:     net.JoinHostPort(a.ip.String(), port),
				Priority: t.priority,
				Weight:   t.weight,
				Role:     role,
			}
			if seen[b.Key()] {
				continue
			}
			if len(recs) >= limit {
				return recs, ttl, true
			}
			seen[b.Key()] = true
			r := Record{Backend: b, TTL: seconds(min(t.ttl, a.ttl))}
			if first || r.TTL < ttl {
				ttl, first = r.TTL, false
			}
			recs = append(recs, r)
		}
	}
	return recs, ttl, false
}
