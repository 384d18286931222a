package dnstest_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/qorb-go/qorb/internal/dnstest"
)

func exchange(t *testing.T, s *dnstest.Server, network, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(q, s.Addr())
	return r, err
}

func TestServerAnswers(t *testing.T) {
	s := dnstest.NewServer(t)
	s.SetSRV("_x._tcp.Test", dnstest.SRV{Priority: 1, Weight: 2, Port: 3, Target: "h.test", TTL: 7})
	s.SetA("h.test", 9, "127.0.0.1")
	s.SetAAAA("h.test", 9, "::1")

	for _, network := range []string{"udp", "tcp"} {
		r, err := exchange(t, s, network, "_X._tcp.test", dns.TypeSRV)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if len(r.Answer) != 1 || len(r.Extra) != 2 || !r.Authoritative {
			t.Fatalf("%s: answer %v", network, r)
		}
		srv := r.Answer[0].(*dns.SRV)
		if srv.Priority != 1 || srv.Weight != 2 || srv.Port != 3 || srv.Target != "h.test." || srv.Hdr.Ttl != 7 {
			t.Errorf("%s: SRV record %v", network, srv)
		}
	}
	s.SetAdditional(false)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err != nil || len(r.Extra) != 0 {
		t.Errorf("with additional off: %v, %v", r, err)
	}
	if r, err := exchange(t, s, "udp", "h.test", dns.TypeAAAA); err != nil || len(r.Answer) != 1 {
		t.Errorf("AAAA h.test: %v, %v", r, err)
	}
	if got := s.QueriesFor("_x._tcp.test.", dns.TypeSRV); got != 3 {
		t.Errorf("QueriesFor(SRV) = %d, want 3", got)
	}
	if got := s.TCPQueries(); got != 1 {
		t.Errorf("TCPQueries() = %d, want 1", got)
	}
	if got := s.Queries(); got != 4 {
		t.Errorf("Queries() = %d, want 4", got)
	}
}

func TestServerNegativeAnswers(t *testing.T) {
	s := dnstest.NewServer(t)
	s.SetNegativeTTL(3)
	s.SetSRV("_x._tcp.test")
	r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("empty name: %v, %v; want NOERROR without records, with SOA", r, err)
	}
	s.Delete("_x._tcp.test")
	r, err = exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV)
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("deleted name: %v, %v; want NXDOMAIN", r, err)
	}
	if soa, ok := r.Ns[0].(*dns.SOA); !ok || soa.Minttl != 3 {
		t.Errorf("authority = %v, want an SOA with minimum 3", r.Ns)
	}
}

func TestServerFaults(t *testing.T) {
	s := dnstest.NewServer(t)
	s.SetSRV("_x._tcp.test", dnstest.SRV{Port: 3, Target: "h.test"})

	s.SetFault(dnstest.FaultServFail)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("servfail: %v, %v", r, err)
	}
	s.SetFault(dnstest.FaultRefused)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("refused: %v, %v", r, err)
	}
	s.SetFault(dnstest.FaultTimeout)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err == nil {
		t.Errorf("timeout: got answer %v", r)
	}
	s.SetFault(dnstest.FaultGarbage)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err == nil {
		t.Errorf("garbage: parsed %v", r)
	}
	s.SetFault(dnstest.FaultTruncate)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err != nil || !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("truncate over UDP: %v, %v", r, err)
	}
	if r, err := exchange(t, s, "tcp", "_x._tcp.test", dns.TypeSRV); err != nil || r.Truncated || len(r.Answer) != 1 {
		t.Errorf("truncate over TCP: %v, %v", r, err)
	}

	// A per-name fault wins over the server-wide one, and FaultNone
	// removes it.
	s.SetFault(dnstest.FaultNone)
	s.SetFaultFor("_X._tcp.test.", dnstest.FaultRefused)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("per-name refused: %v, %v", r, err)
	}
	s.SetFaultFor("_x._tcp.test", dnstest.FaultNone)
	if r, err := exchange(t, s, "udp", "_x._tcp.test", dns.TypeSRV); err != nil || len(r.Answer) != 1 {
		t.Errorf("after clearing the fault: %v, %v", r, err)
	}
}

func TestStartCloseReportsBadArguments(t *testing.T) {
	s, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	s.SetA("h.test", 1, "::1")
	s.SetAAAA("h.test", 1, "127.0.0.1", "nonsense")
	if err := s.Close(); err == nil {
		t.Errorf("Close() = nil, want the three bad addresses reported")
	}
}
