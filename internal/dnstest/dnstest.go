// Package dnstest runs a small authoritative DNS server on the loopback
// interface for tests.
//
// A [Server] answers SRV, A and AAAA questions from records the test sets
// and replaces while the server runs, over UDP and TCP on the same port.
// It can be told to misbehave (fail, stay silent, truncate, send garbage)
// and counts the questions it was asked, so a test can check what a client
// did without sleeping:
//
//	s := dnstest.NewServer(t)
//	s.SetSRV("_postgresql._tcp.db.test", dnstest.SRV{Target: "pg1.db.test", Port: 5432, TTL: 5})
//	s.SetA("pg1.db.test", 5, "127.0.0.1")
//	// point the code under test at s.Addr()
//
// Names are matched without regard to case or a trailing dot. A name the
// server holds no records for is answered with NXDOMAIN; a name it holds
// other records for (or an empty set, see [Server.SetSRV]) is answered with
// an empty NOERROR answer. Negative answers carry an SOA record in the
// authority section whose minimum is the server's negative TTL.
//
// A server from [NewServer] stops when the test ends (through t.Cleanup);
// one from [Start] stops on [Server.Close].
package dnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault is a way for the server to misbehave instead of answering.
type Fault uint8

// The faults a [Server] can inject.
const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultServFail answers with rcode SERVFAIL and no records.
	FaultServFail
	// FaultRefused answers with rcode REFUSED and no records.
	FaultRefused
	// FaultTimeout sends no answer at all, so the client times out.
	FaultTimeout
	// FaultTruncate answers over UDP with the TC bit set and no records;
	// questions over TCP are answered normally.
	FaultTruncate
	// FaultGarbage answers with the question's ID followed by bytes that
	// do not parse as a DNS message.
	FaultGarbage
)

// String returns the fault's name, such as "servfail".
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultServFail:
		return "servfail"
	case FaultRefused:
		return "refused"
	case FaultTimeout:
		return "timeout"
	case FaultTruncate:
		return "truncate"
	case FaultGarbage:
		return "garbage"
	}
	return fmt.Sprintf("fault(%d)", uint8(f))
}

// SRV is one SRV record: where a service runs and with what priority and
// weight (RFC 2782). A Target of "." says the service is not available.
type SRV struct {
	Priority uint16
	Weight   uint16
	Port     uint16
	Target   string
	// TTL is the record's time to live in seconds.
	TTL uint32
}

// A Server is an in-process DNS server for tests. Its methods are safe for
// concurrent use, also while a client is asking it questions.
type Server struct {
	t    testing.TB // nil for a server from Start
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	wg   sync.WaitGroup

	mu         sync.Mutex
	names      map[string]*rrsets // canonical name → records
	fault      Fault
	faults     map[string]Fault // per canonical name
	additional bool
	negTTL     uint32
	queries    map[question]int
	tcpQueries int
	total      int
	errs       []error // bad setter arguments (servers from Start) and serve errors
}

type rrsets struct {
	srv   []dns.RR
	a     []dns.RR
	aaaa  []dns.RR
	cname *dns.CNAME // an alias: the name has no other records
}

// maxChase bounds the CNAME records the server follows in one answer.
const maxChase = 16

type question struct {
	name  string
	qtype uint16
}

// NewServer starts a server on 127.0.0.1 with a free port for UDP and TCP,
// and stops it when the test ends. It holds no records yet, puts the
// addresses of SRV targets in the additional section of SRV answers, and
// gives negative answers a TTL of 1 second. Bad arguments to its setters
// mark the test failed.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	s.t = t
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Start is [NewServer] for code without a testing.TB, such as examples.
// The caller must call [Server.Close], which also reports bad arguments
// given to the setters.
func Start() (*Server, error) {
	s := &Server{
		names:      make(map[string]*rrsets),
		faults:     make(map[string]Fault),
		queries:    make(map[question]int),
		additional: true,
		negTTL:     1,
	}
	pc, ln, err := listenPair()
	if err != nil {
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP)}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP)}

	started := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, fmt.Errorf("dnstest: serving on %s: %w", s.addr, err))
				s.mu.Unlock()
				started <- struct{}{}
			}
		})
	}
	<-started
	<-started
	return s, nil
}

// Close stops the server and waits for its goroutines to end. It returns
// the errors the server met while serving, and any bad arguments its
// setters were given. Servers from [NewServer] are closed by the test.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("dnstest: shutting down %s: %w", s.addr, err))
		}
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(append(s.errs, errs...)...)
}

// listenPair opens a UDP socket and a TCP listener on the same free port
// of 127.0.0.1.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listening on UDP: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		lastErr = err
		pc.Close()
	}
	return nil, nil, fmt.Errorf("no free port for both UDP and TCP: %w", lastErr)
}

// Addr returns the "127.0.0.1:port" the server listens on, for UDP and
// TCP alike.
func (s *Server) Addr() string { return s.addr }

// SetSRV replaces the SRV records of name (and a CNAME record, which
// [Server.SetCNAME] gave it). With no records, name still
// exists (questions about it get an empty answer, not NXDOMAIN); use
// [Server.Delete] to remove it.
func (s *Server) SetSRV(name string, records ...SRV) {
	owner := canonical(name)
	rrs := make([]dns.RR, 0, len(records))
	for _, r := range records {
		rrs = append(rrs, &dns.SRV{
			Hdr:      header(owner, dns.TypeSRV, r.TTL),
			Priority: r.Priority,
			Weight:   r.Weight,
			Port:     r.Port,
			Target:   canonical(r.Target),
		})
	}
	s.mu.Lock()
	e := s.entry(owner)
	e.srv, e.cname = rrs, nil
	s.mu.Unlock()
}

// SetA replaces the A records of host with the IPv4 addresses ips, each
// with the given TTL in seconds. An address that is not IPv4 is left out
// and reported (see [NewServer] and [Server.Close]).
func (s *Server) SetA(host string, ttl uint32, ips ...string) {
	owner := canonical(host)
	rrs := make([]dns.RR, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			s.badArg(fmt.Errorf("dnstest: SetA(%q): %q is not an IPv4 address", host, ip))
			continue
		}
		rrs = append(rrs, &dns.A{Hdr: header(owner, dns.TypeA, ttl), A: a.AsSlice()})
	}
	s.mu.Lock()
	e := s.entry(owner)
	e.a, e.cname = rrs, nil
	s.mu.Unlock()
}

// SetAAAA replaces the AAAA records of host with the IPv6 addresses ips,
// each with the given TTL in seconds. An address that is not IPv6 is left
// out and reported (see [NewServer] and [Server.Close]).
func (s *Server) SetAAAA(host string, ttl uint32, ips ...string) {
	owner := canonical(host)
	rrs := make([]dns.RR, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is6() || a.Is4In6() {
			s.badArg(fmt.Errorf("dnstest: SetAAAA(%q): %q is not an IPv6 address", host, ip))
			continue
		}
		rrs = append(rrs, &dns.AAAA{Hdr: header(owner, dns.TypeAAAA, ttl), AAAA: a.AsSlice()})
	}
	s.mu.Lock()
	e := s.entry(owner)
	e.aaaa, e.cname = rrs, nil
	s.mu.Unlock()
}

// SetCNAME makes name an alias of target, replacing its other records.
// The server answers a question about name as an authoritative server
// does: with the CNAME record, followed by the answer for target (more
// CNAME records included, up to 16, and not past a loop, so that a test
// can serve a CNAME loop), NXDOMAIN when target does not exist.
func (s *Server) SetCNAME(name string, ttl uint32, target string) {
	owner := canonical(name)
	s.mu.Lock()
	s.names[owner] = &rrsets{cname: &dns.CNAME{Hdr: header(owner, dns.TypeCNAME, ttl), Target: canonical(target)}}
	s.mu.Unlock()
}

// Delete removes every record of name, so that questions about it get
// NXDOMAIN.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	delete(s.names, canonical(name))
	s.mu.Unlock()
}

// SetFault makes the server misbehave in the way f says for every
// question, until it is called again with [FaultNone]. A fault set for one
// name with [Server.SetFaultFor] takes precedence.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// SetFaultFor makes the server misbehave in the way f says for questions
// about name only. [FaultNone] removes the name's own fault, so that it
// follows the server-wide one again.
func (s *Server) SetFaultFor(name string, f Fault) {
	s.mu.Lock()
	if f == FaultNone {
		delete(s.faults, canonical(name))
	} else {
		s.faults[canonical(name)] = f
	}
	s.mu.Unlock()
}

// SetAdditional says whether SRV answers carry the A and AAAA records of
// their targets in the additional section (the default), as an
// authoritative server does for targets in its zone. Without them a client
// has to ask for each target's addresses.
func (s *Server) SetAdditional(on bool) {
	s.mu.Lock()
	s.additional = on
	s.mu.Unlock()
}

// SetNegativeTTL sets the minimum field of the SOA record sent with
// NXDOMAIN and empty answers, which tells a client how long it may
// remember that nothing is there (RFC 2308).
func (s *Server) SetNegativeTTL(seconds uint32) {
	s.mu.Lock()
	s.negTTL = seconds
	s.mu.Unlock()
}

// Queries returns how many questions the server has been asked, over UDP
// and TCP, including those it answered with a fault.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// QueriesFor returns how many questions of type qtype (dns.TypeSRV,
// dns.TypeA, ...) the server has been asked about name.
func (s *Server) QueriesFor(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[question{canonical(name), qtype}]
}

// TCPQueries returns how many of the questions came over TCP.
func (s *Server) TCPQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpQueries
}

// badArg reports a bad argument to a setter: to the test for a server from
// NewServer, through Close for one from Start.
func (s *Server) badArg(err error) {
	if s.t != nil {
		s.t.Helper()
		s.t.Error(err)
		return
	}
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

// entry returns the record sets of owner, creating them. s.mu is held.
func (s *Server) entry(owner string) *rrsets {
	e := s.names[owner]
	if e == nil {
		e = &rrsets{}
		s.names[owner] = e
	}
	return e
}

func (s *Server) serveUDP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, false) }
func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, true) }

// serve builds the answer under the lock and writes it after.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, overTCP bool) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)

	s.mu.Lock()
	s.total++
	s.queries[question{name, q.Qtype}]++
	if overTCP {
		s.tcpQueries++
	}
	fault, ok := s.faults[name]
	if !ok {
		fault = s.fault
	}
	var m *dns.Msg
	if fault == FaultNone || (fault == FaultTruncate && overTCP) {
		m = s.answerLocked(req, name, q.Qtype)
	}
	s.mu.Unlock()

	switch {
	case m != nil:
	case fault == FaultTimeout:
		return
	case fault == FaultGarbage:
		// A header that claims one question, then bytes that end it early.
		junk := []byte{byte(req.Id >> 8), byte(req.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0xff, 0xee}
		_, _ = w.Write(junk)
		return
	case fault == FaultTruncate:
		m = new(dns.Msg)
		m.SetReply(req)
		m.Truncated = true
	case fault == FaultServFail:
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
	default: // FaultRefused
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
	}
	if !overTCP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answerLocked builds the answer to one question from the records. s.mu
// is held; the records are copied, so the answer may be written after the
// lock is released.
func (s *Server) answerLocked(req *dns.Msg, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	e, ok := s.names[name]
	seen := map[string]bool{name: true}
	for ok && e.cname != nil && qtype != dns.TypeCNAME {
		m.Answer = append(m.Answer, dns.Copy(e.cname))
		next := e.cname.Target
		if seen[next] || len(seen) > maxChase {
			return m // a loop or too long a chain: the answer shows it
		}
		seen[next] = true
		name = next
		e, ok = s.names[name]
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soaLocked(name)}
		return m
	}
	aliases := len(m.Answer)
	switch qtype {
	case dns.TypeSRV:
		m.Answer = append(m.Answer, copyRRs(e.srv)...)
		if s.additional {
			for _, rr := range e.srv {
				if t, ok := s.names[rr.(*dns.SRV).Target]; ok {
					m.Extra = append(m.Extra, copyRRs(t.a)...)
					m.Extra = append(m.Extra, copyRRs(t.aaaa)...)
				}
			}
		}
	case dns.TypeA:
		m.Answer = append(m.Answer, copyRRs(e.a)...)
	case dns.TypeAAAA:
		m.Answer = append(m.Answer, copyRRs(e.aaaa)...)
	}
	if len(m.Answer) == aliases {
		m.Ns = []dns.RR{s.soaLocked(name)}
	}
	return m
}

// soaLocked returns the SOA record sent with a negative answer about name.
func (s *Server) soaLocked(name string) dns.RR {
	return &dns.SOA{
		Hdr:     header(name, dns.TypeSOA, s.negTTL),
		Ns:      "ns.dnstest.",
		Mbox:    "hostmaster.dnstest.",
		Serial:  1,
		Refresh: 60,
		Retry:   60,
		Expire:  600,
		Minttl:  s.negTTL,
	}
}

func copyRRs(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

func header(owner string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// canonical returns name in lower case with a trailing dot.
func canonical(name string) string {
	return dns.CanonicalName(strings.TrimSpace(name))
}
