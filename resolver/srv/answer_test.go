package srv

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/qorb-go/qorb/resolver"
)

const fuzzName = "_svc._tcp.example."

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("dns.NewRR(%q): %v", s, err)
	}
	return r
}

func msg(t testing.TB, qname string, qtype uint16, answer, extra []string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.Response = true
	for _, s := range answer {
		m.Answer = append(m.Answer, rr(t, s))
	}
	for _, s := range extra {
		m.Extra = append(m.Extra, rr(t, s))
	}
	return m
}

// backendsFrom runs an SRV answer through the answer handling, with the
// addresses of its targets taken from the additional section and from
// the answer section (as an A or AAAA answer would give them).
func backendsFrom(m *dns.Msg, name string, limit int) []Record {
	ans := parseSRV(m, name, limit)
	addrs := make(map[string][]addrRR)
	for _, t := range ans.targets {
		list := slices.Clone(ans.extra[t.host])
		a4, _ := parseAddrs(m, t.host, dns.TypeA)
		a6, _ := parseAddrs(m, t.host, dns.TypeAAAA)
		list = append(list, a4...)
		list = append(list, a6...)
		addrs[t.host] = list
	}
	recs, _, _ := assemble(ans.targets, addrs, resolver.RoleReplica, limit)
	return recs
}

func TestParseSRVAnswer(t *testing.T) {
	tests := []struct {
		name          string
		answer, extra []string
		want          []string
		unavailable   bool
	}{
		{
			name:   "additional addresses",
			answer: []string{fuzzName + " 30 IN SRV 1 5 5432 db1.example."},
			extra:  []string{"db1.example. 10 IN A 192.0.2.1", "db1.example. 20 IN AAAA 2001:db8::1", "other.example. 5 IN A 192.0.2.9"},
			want:   []string{"db1.example@192.0.2.1:5432 1/5 10s", "db1.example@[2001:db8::1]:5432 1/5 20s"},
		},
		{
			name:   "CNAME to the SRV owner",
			answer: []string{fuzzName + " 30 IN CNAME real.example.", "real.example. 30 IN SRV 0 0 80 DB1.Example.", "db1.example. 40 IN A 192.0.2.1"},
			want:   []string{"db1.example@192.0.2.1:80 0/0 30s"},
		},
		{
			name:   "CNAME loop",
			answer: []string{fuzzName + " 30 IN CNAME a.example.", "a.example. 30 IN CNAME " + fuzzName},
		},
		{
			name:        "dot target",
			answer:      []string{fuzzName + " 30 IN SRV 0 0 0 ."},
			unavailable: true,
		},
		{
			name:   "dot target beside a real one is ignored",
			answer: []string{fuzzName + " 30 IN SRV 0 0 0 .", fuzzName + " 30 IN SRV 0 0 1 db1.example.", "db1.example. 40 IN A 192.0.2.1"},
			want:   []string{"db1.example@192.0.2.1:1 0/0 30s"},
		},
		{
			name: "unusable addresses skipped",
			answer: []string{fuzzName + " 30 IN SRV 0 0 1 db1.example.",
				"db1.example. 40 IN A 0.0.0.0", "db1.example. 40 IN A 224.0.0.1", "db1.example. 40 IN AAAA ::",
				"db1.example. 40 IN AAAA ::ffff:192.0.2.7", "db1.example. 40 IN AAAA ff02::1", "db1.example. 40 IN A 192.0.2.1"},
			want: []string{"db1.example@192.0.2.1:1 0/0 30s"},
		},
		{
			name: "bad target names and records of other owners or classes skipped",
			answer: []string{fuzzName + ` 30 IN SRV 0 0 1 we\032ird.example.`, "x.example. 30 IN SRV 0 0 2 db1.example.",
				fuzzName + " 30 CH SRV 0 0 3 db1.example.", fuzzName + " 30 IN SRV 0 0 4 db1.example.", "db1.example. 40 IN A 192.0.2.1"},
			want: []string{"db1.example@192.0.2.1:4 0/0 30s"},
		},
		{
			name:   "duplicate addresses merged with the shorter TTL",
			answer: []string{fuzzName + " 30 IN SRV 0 0 1 db1.example.", "db1.example. 40 IN A 192.0.2.1"},
			extra:  []string{"db1.example. 5 IN A 192.0.2.1"},
			want:   []string{"db1.example@192.0.2.1:1 0/0 5s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := msg(t, fuzzName, dns.TypeSRV, tt.answer, tt.extra)
			if got := parseSRV(m, fuzzName, 10).unavailable; got != tt.unavailable {
				t.Errorf("unavailable = %v, want %v", got, tt.unavailable)
			}
			var got []string
			for _, r := range backendsFrom(m, fuzzName, 10) {
				got = append(got, fmt.Sprintf("%s %d/%d %v", r.Key(), r.Priority, r.Weight, r.TTL))
				if r.Role != resolver.RoleReplica {
					t.Errorf("%v has role %v, want the configured replica", r.Backend, r.Role)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("backends = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddressCaps(t *testing.T) {
	answer := []string{fuzzName + " 30 IN SRV 0 0 1 db1.example."}
	for i := range 300 {
		answer = append(answer, fmt.Sprintf("db1.example. 30 IN A 10.0.%d.%d", i/250, i%250+1))
	}
	m := msg(t, fuzzName, dns.TypeSRV, answer, nil)
	list, capped := parseAddrs(m, "db1.example.", dns.TypeA)
	if len(list) != maxAddrsPerTarget || !capped {
		t.Errorf("parseAddrs kept %d addresses (capped %v), want %d (capped true)", len(list), capped, maxAddrsPerTarget)
	}
}

func TestNegativeTTL(t *testing.T) {
	m := msg(t, fuzzName, dns.TypeSRV, nil, nil)
	if got := negativeTTL(m); got != 0 {
		t.Errorf("negativeTTL without SOA = %v, want 0", got)
	}
	m.Ns = []dns.RR{rr(t, "example. 300 IN SOA ns.example. host.example. 1 60 60 600 30")}
	if got, want := negativeTTL(m), seconds(30); got != want {
		t.Errorf("negativeTTL = %v, want %v", got, want)
	}
}

// FuzzAnswer feeds arbitrary DNS messages through the answer handling: it
// must not panic, must respect the caps, and must produce only backends
// that can be dialled.
func FuzzAnswer(f *testing.F) {
	seeds := [][]string{
		{fuzzName + " 30 IN SRV 1 5 5432 db1.example.", "db1.example. 10 IN A 192.0.2.1", "db1.example. 20 IN AAAA 2001:db8::1"},
		{fuzzName + " 30 IN CNAME real.example.", "real.example. 30 IN SRV 0 0 80 db1.example.", "db1.example. 40 IN A 192.0.2.1"},
		{fuzzName + " 0 IN SRV 0 0 0 ."},
		{fuzzName + " 30 IN SRV 0 0 1 db1.example.", "db1.example. 40 IN AAAA ::ffff:192.0.2.7", "db1.example. 40 IN A 0.0.0.0"},
	}
	for _, answer := range seeds {
		m := msg(f, fuzzName, dns.TypeSRV, answer, nil)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(4))
	}
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0xff, 0xee}, uint8(1))

	f.Fuzz(func(t *testing.T, data []byte, lim uint8) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		name := fuzzName
		if len(m.Question) > 0 {
			name = strings.ToLower(dns.Fqdn(m.Question[0].Name))
		}
		limit := int(lim%16) + 1
		recs := backendsFrom(m, name, limit)
		if len(recs) > limit {
			t.Fatalf("%d backends, over the cap of %d", len(recs), limit)
		}
		seen := make(map[resolver.Key]bool)
		for _, r := range recs {
			if err := r.Validate(); err != nil {
				t.Fatalf("invalid backend %+v: %v", r.Backend, err)
			}
			_, port, _ := net.SplitHostPort(r.Addr)
			if p, _ := strconv.Atoi(port); p == 0 {
				t.Fatalf("backend %+v has port 0", r.Backend)
			}
			if !validHost(r.Host + ".") {
				t.Fatalf("backend %+v has a bad host name", r.Backend)
			}
			if seen[r.Key()] {
				t.Fatalf("backend %v listed twice", r.Key())
			}
			seen[r.Key()] = true
		}
	})
}
