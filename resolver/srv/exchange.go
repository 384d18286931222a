package srv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// This file asks the name servers one question: over UDP, then over TCP
// when the UDP answer is truncated, one server after the other or all at
// once.

// ask puts the question (name, qtype) to the name servers and returns the
// first usable answer (NOERROR or NXDOMAIN) and the server that gave it.
// It fails with a *LookupError when none gives one, or with ctx.Err().
// Events are added to n.
func (s *Resolver) ask(ctx context.Context, name string, qtype uint16, n *notes) (*dns.Msg, string, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(s.cfg.UDPSize, false)
	if s.cfg.Parallel && len(s.servers) > 1 {
		return s.askAll(ctx, q, n)
	}
	return s.askInTurn(ctx, q, n)
}

// askInTurn asks one server after the other, starting with the one that
// answered last.
func (s *Resolver) askInTurn(ctx context.Context, q *dns.Msg, n *notes) (*dns.Msg, string, error) {
	var errs []*QueryError
	start := int(s.first.Load()) % len(s.servers)
	for i := range s.servers {
		idx := (start + i) % len(s.servers)
		server := s.servers[idx]
		r, err := s.exchange(ctx, server, q, n)
		if err == nil {
			if i > 0 {
				s.first.Store(uint32(idx))
			}
			return r, server, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		qe := asQueryError(err)
		errs = append(errs, qe)
		n.add(Event{Kind: EventQueryFailed, Name: s.name, Server: server, Err: qe})
	}
	return nil, "", &LookupError{Name: q.Question[0].Name, Type: dns.TypeToString[q.Question[0].Qtype], Errs: errs}
}

// askAll asks every server at once and takes the first usable answer. It
// returns once every exchange has ended; the slower ones are cancelled.
func (s *Resolver) askAll(ctx context.Context, q *dns.Msg, n *notes) (*dns.Msg, string, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		server string
		msg    *dns.Msg
		err    error
		notes  notes
	}
	results := make(chan result, len(s.servers))
	var wg sync.WaitGroup
	for _, server := range s.servers {
		qc := q.Copy()
		wg.Go(func() {
			res := result{server: server, notes: notes{on: n.on}}
			res.msg, res.err = s.exchange(actx, server, qc, &res.notes)
			results <- res
		})
	}
	var (
		win  *result
		errs []*QueryError
	)
	for range s.servers {
		res := <-results
		if win != nil && res.err != nil && actx.Err() != nil && ctx.Err() == nil {
			continue // cancelled because another server answered
		}
		n.events = append(n.events, res.notes.events...)
		switch {
		case res.err == nil && win == nil:
			win = &res
			cancel()
		case res.err != nil && ctx.Err() == nil:
			qe := asQueryError(res.err)
			errs = append(errs, qe)
			n.add(Event{Kind: EventQueryFailed, Name: s.name, Server: res.server, Err: qe})
		}
	}
	wg.Wait()
	if win != nil {
		return win.msg, win.server, nil
	}
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	return nil, "", &LookupError{Name: q.Question[0].Name, Type: dns.TypeToString[q.Question[0].Qtype], Errs: errs}
}

// asQueryError returns err as a *QueryError; exchange returns nothing else
// while its context is live.
func asQueryError(err error) *QueryError {
	var qe *QueryError
	if errors.As(err, &qe) {
		return qe
	}
	return &QueryError{Kind: ErrUnreachable, Cause: err}
}

// exchange asks server the question q over UDP, and over TCP when the UDP
// answer is truncated. It returns an answer with rcode NOERROR or NXDOMAIN
// to the question asked, a *QueryError, or ctx.Err().
func (s *Resolver) exchange(ctx context.Context, server string, q *dns.Msg, n *notes) (*dns.Msg, error) {
	qname, qtype := q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype]
	fail := func(kind, cause error) error {
		return &QueryError{Server: server, Name: qname, Type: qtype, Kind: kind, Cause: cause}
	}
	r, err := s.exchangeOver(ctx, "udp", server, q)
	if err == nil && r.Truncated {
		n.add(Event{Kind: EventTruncated, Name: s.name, Server: server})
		r, err = s.exchangeOver(ctx, "tcp", server, q)
	}
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) {
			qe.Server, qe.Name, qe.Type = server, qname, qtype
		}
		return nil, err
	}
	if !r.Response || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 ||
		!strings.EqualFold(r.Question[0].Name, qname) || r.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fail(ErrMalformed, errors.New("answer to another question"))
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		if err := checkAliases(r, qname, q.Question[0].Qtype); err != nil {
			return nil, fail(ErrMalformed, err)
		}
		return r, nil
	case dns.RcodeRefused:
		return nil, &QueryError{Server: server, Name: qname, Type: qtype, Kind: ErrRefused, Rcode: rcodeName(r.Rcode)}
	default:
		return nil, &QueryError{Server: server, Name: qname, Type: qtype, Kind: ErrServerFailure, Rcode: rcodeName(r.Rcode)}
	}
}

// exchangeOver does one exchange with server over network ("udp" or
// "tcp"), within the query timeout. Cancelling ctx ends it at once.
func (s *Resolver) exchangeOver(ctx context.Context, network, server string, q *dns.Msg) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	c := &dns.Client{Net: network, UDPSize: s.cfg.UDPSize, Timeout: s.cfg.QueryTimeout}
	conn, err := c.DialContext(qctx, server)
	if err != nil {
		return nil, classify(ctx, qctx, err)
	}
	defer conn.Close()
	// The client only looks at the context's deadline; closing the
	// connection also ends the exchange when ctx is cancelled.
	stop := context.AfterFunc(qctx, func() { conn.Close() })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(qctx, q, conn)
	if err != nil {
		if network == "udp" && r != nil && r.Truncated && ctx.Err() == nil {
			// Cut off in the middle of a record: TCP will tell.
			return r, nil
		}
		return nil, classify(ctx, qctx, err)
	}
	return r, nil
}

// classify turns an exchange's error into a *QueryError (without server
// and question, which the caller fills in), or into ctx.Err() when the
// caller gave up.
func classify(ctx, qctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	var de *dns.Error
	switch {
	case qctx.Err() != nil, errors.As(err, &ne) && ne.Timeout():
		return &QueryError{Kind: ErrTimeout}
	case errors.As(err, &de):
		return &QueryError{Kind: ErrMalformed, Cause: err}
	default:
		return &QueryError{Kind: ErrUnreachable, Cause: err}
	}
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("%d", rc)
}
