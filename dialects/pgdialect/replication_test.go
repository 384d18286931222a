package pgdialect

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/resolver"
)

func TestReached(t *testing.T) {
	tests := []struct {
		have, want string
		reached    bool
		bad        bool
	}{
		{have: "0/0", want: "0/0", reached: true},
		{have: "0/3000148", want: "0/3000148", reached: true},
		{have: "0/3000149", want: "0/3000148", reached: true},
		{have: "0/3000147", want: "0/3000148", reached: false},
		{have: "1/0", want: "0/FFFFFFFF", reached: true},
		{have: "0/FFFFFFFF", want: "1/0", reached: false},
		{have: "FFFFFFFF/FFFFFFFF", want: "0/0", reached: true},
		{have: "0/3000148", want: "0/3000148", reached: true},
		{have: "0/a", want: "0/A", reached: true},
		{have: "00000000/00000010", want: "0/F", reached: true},
		// Numbers, not text: "0/10" > "0/F".
		{have: "0/F", want: "0/10", reached: false},
		{have: "", want: "0/0", bad: true},
		{have: "0/0", want: "", bad: true},
		{have: "0", want: "0/0", bad: true},
		{have: "0/", want: "0/0", bad: true},
		{have: "/0", want: "0/0", bad: true},
		{have: "0/0/0", want: "0/0", bad: true},
		{have: "0/G", want: "0/0", bad: true},
		{have: "0/-1", want: "0/0", bad: true},
		{have: "0/+1", want: "0/0", bad: true},
		{have: "0x0/0", want: "0/0", bad: true},
		{have: " 0/0", want: "0/0", bad: true},
		{have: "0/100000000", want: "0/0", bad: true},
		{have: "0/000000001", want: "0/0", bad: true},
		{have: "0-1-100", want: "0/0", bad: true},
	}
	o := &Opener{}
	for _, tt := range tests {
		got, err := o.Reached(tt.have, tt.want)
		switch {
		case tt.bad:
			if !errors.Is(err, ErrBadPosition) {
				t.Errorf("Reached(%q, %q) = %v, %v, want ErrBadPosition", tt.have, tt.want, got, err)
			}
		case err != nil || got != tt.reached:
			t.Errorf("Reached(%q, %q) = %v, %v, want %v", tt.have, tt.want, got, err, tt.reached)
		}
	}
}

func FuzzReached(f *testing.F) {
	for _, s := range [][2]string{{"0/0", "0/0"}, {"0/3000148", "1/0"}, {"FFFFFFFF/FFFFFFFF", "0/a"}, {"0/", "x"}} {
		f.Add(s[0], s[1])
	}
	o := &Opener{}
	f.Fuzz(func(t *testing.T, have, want string) {
		hw, err := o.Reached(have, want)
		if err != nil {
			if !errors.Is(err, ErrBadPosition) {
				t.Fatalf("Reached(%q, %q) error %v does not wrap ErrBadPosition", have, want, err)
			}
			return
		}
		// Both parsed: the order is total and reflexive.
		wh, err := o.Reached(want, have)
		if err != nil {
			t.Fatalf("Reached(%q, %q) = %v, but Reached(%q, %q) fails: %v", have, want, hw, want, have, err)
		}
		if !hw && !wh {
			t.Errorf("neither of %q and %q reaches the other", have, want)
		}
		if ok, err := o.Reached(have, have); !ok || err != nil {
			t.Errorf("Reached(%q, %q) = %v, %v, want true", have, have, ok, err)
		}
	})
}

func TestReadOnly(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{err: &pgconn.PgError{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}, want: true},
		{err: fmt.Errorf("exec: %w", &pgconn.PgError{Code: "25006"}), want: true},
		{err: &pgconn.PgError{Code: "25P02"}, want: false},
		{err: &pgconn.PgError{Code: "55000", Message: "recovery is in progress"}, want: false},
		{err: &pgconn.PgError{Code: "42501"}, want: false},
		{err: errors.New("cannot execute INSERT in a read-only transaction"), want: false},
		{err: io.EOF, want: false},
		{err: nil, want: false},
	}
	o := &Opener{}
	for _, tt := range tests {
		if got := o.ReadOnly(tt.err); got != tt.want {
			t.Errorf("ReadOnly(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestClusterPosition: a primary's Position advances with a write, a
// standby's reaches it once replayed, and not while replay is paused; a
// write on the standby fails with a ReadOnly error.
func TestClusterPosition(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("starts a PostgreSQL primary and standby (needs root, not -short)")
	}
	c := dbtest.StartPostgresCluster(t, 1)
	o, err := NewOpener(qorb.DriverConfig{User: dbtest.User, Password: dbtest.Password, Database: dbtest.Database,
		Params: url.Values{"sslmode": {"disable"}}})
	if err != nil {
		t.Fatal(err)
	}
	primary := connect(t, o, resolver.Backend{Host: "127.0.0.1", Addr: c.Primary.Addr()})
	standby := connect(t, o, resolver.Backend{Host: "127.0.0.1", Addr: c.Standbys[0].Addr()})
	position := func(name string, cn *stdlib.Conn) string {
		t.Helper()
		pos, err := o.Position(t.Context(), cn)
		if err != nil {
			t.Fatalf("Position(%s): %v", name, err)
		}
		return pos
	}
	reached := func(have, want string) bool {
		t.Helper()
		ok, err := o.Reached(have, want)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	before := position("primary", primary)
	exec(t, primary, "CREATE TABLE positions (n int)")
	exec(t, primary, "INSERT INTO positions VALUES (1)")
	after := position("primary", primary)
	if reached(before, after) || !reached(after, before) {
		t.Errorf("primary's Position did not advance with a write: %s before, %s after", before, after)
	}

	c.WaitReplicated(t)
	if s := position("standby", standby); !reached(s, after) {
		t.Errorf("replicated standby's Position %s does not reach the primary's %s", s, after)
	}

	c.Standbys[0].PauseReplay(t)
	exec(t, primary, "INSERT INTO positions VALUES (2)")
	latest := position("primary", primary)
	if s := position("standby", standby); reached(s, latest) {
		t.Errorf("paused standby's Position %s reaches the primary's %s", s, latest)
	}
	c.Standbys[0].ResumeReplay(t)
	c.WaitReplicated(t)
	if s := position("standby", standby); !reached(s, latest) {
		t.Errorf("resumed standby's Position %s does not reach the primary's %s", s, latest)
	}

	_, err = standby.Conn().Exec(t.Context(), "INSERT INTO positions VALUES (3)")
	if err == nil || !o.ReadOnly(err) {
		t.Errorf("write on the standby: ReadOnly(%v) = false, want an error for which it is true", err)
	}
	_, err = primary.Conn().Exec(t.Context(), "INSERT INTO no_such_table VALUES (1)")
	if err == nil || o.ReadOnly(err) {
		t.Errorf("bad write on the primary: ReadOnly(%v) = true, want an error for which it is false", err)
	}
}
