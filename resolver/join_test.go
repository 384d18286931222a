package resolver

import (
	"context"
	"errors"
	"testing"
)

// pushResolver reports the sets sent on ch.
type pushResolver struct{ ch chan []Backend }

func (r pushResolver) Run(ctx context.Context, rc Receiver) error {
	for {
		select {
		case bs := <-r.ch:
			rc.Update(bs)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestJoin(t *testing.T) {
	a, b := pushResolver{make(chan []Backend)}, pushResolver{make(chan []Backend)}
	got := make(chan []Backend, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- Join(a, b).Run(ctx, UpdateFunc(func(bs []Backend) { got <- bs })) }()

	p := Backend{Host: "p", Addr: "127.0.0.1:1", Role: RolePrimary}
	r1 := Backend{Host: "r1", Addr: "127.0.0.1:2", Role: RoleReplica}
	r2 := Backend{Host: "r2", Addr: "127.0.0.1:3", Role: RoleReplica}
	a.ch <- []Backend{p}
	if bs := <-got; len(bs) != 1 || bs[0] != p {
		t.Errorf("after the first resolver: %v, want [%v]", bs, p)
	}
	b.ch <- []Backend{r1, r2, p} // p listed twice: reported once, as a reports it
	if bs := <-got; len(bs) != 3 || bs[0] != p || bs[1] != r1 || bs[2] != r2 {
		t.Errorf("after both: %v, want [%v %v %v]", bs, p, r1, r2)
	}
	a.ch <- nil
	if bs := <-got; len(bs) != 3 {
		t.Errorf("after the first emptied: %v, want the second's 3", bs)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// reportResolver reports the outcomes sent on ch.
type reportResolver struct{ ch chan error }

func (r reportResolver) Run(ctx context.Context, rc Receiver) error {
	for {
		select {
		case err := <-r.ch:
			rc.Report(err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reports is a Receiver that passes on what it is told.
type reports chan error

func (reports) Update([]Backend)   {}
func (r reports) Report(err error) { r <- err }

func TestJoinReports(t *testing.T) {
	a, b := reportResolver{make(chan error)}, reportResolver{make(chan error)}
	got := make(reports, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- Join(a, b).Run(ctx, got) }()

	errA, errB := errors.New("a failed"), errors.New("b failed")
	a.ch <- errA // not reported: b has not been heard from
	b.ch <- nil  // both heard from: a's failure stands
	if err := <-got; !errors.Is(err, errA) || errors.Is(err, errB) {
		t.Errorf("after a failed and b confirmed: %v, want a's failure", err)
	}
	b.ch <- errB
	if err := <-got; !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("after both failed: %v, want both failures", err)
	}
	a.ch <- nil
	if err := <-got; !errors.Is(err, errB) || errors.Is(err, errA) {
		t.Errorf("after a confirmed: %v, want b's failure", err)
	}
	b.ch <- nil
	if err := <-got; err != nil {
		t.Errorf("after both confirmed: %v, want nil", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}
