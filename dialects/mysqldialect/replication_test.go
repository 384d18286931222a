package mysqldialect

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/resolver"
)

const (
	uuidA = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	uuidB = "8a94f357-aab4-11df-86ab-c80aa9429562"
)

func TestReached(t *testing.T) {
	tests := []struct {
		have, want string
		reached    bool
		bad        bool
	}{
		{have: "", want: "", reached: true},
		{have: "0-1-100", want: "", reached: true},
		{have: "", want: "0-1-1", reached: false},
		{have: "0-1-100", want: "0-1-100", reached: true},
		{have: "0-1-101", want: "0-1-100", reached: true},
		{have: "0-1-99", want: "0-1-100", reached: false},
		// Server ids do not count: after a failover, 0-2-101 follows 0-1-100.
		{have: "0-2-101", want: "0-1-100", reached: true},
		{have: "0-1-100", want: "0-2-101", reached: false},
		{have: "0-1-100,1-2-7", want: "0-1-100,1-2-7", reached: true},
		{have: "1-2-7,0-1-100", want: "0-1-100,1-2-7", reached: true},
		{have: "0-1-100,1-2-7", want: "0-1-100", reached: true},
		{have: "0-1-100,1-2-7", want: "0-1-100,1-2-8", reached: false},
		// A domain missing from have: nothing of it applied.
		{have: "0-1-100", want: "0-1-100,1-2-7", reached: false},
		{have: "0-1-100", want: "5-1-1", reached: false},
		{have: "0-1-18446744073709551615", want: "0-1-18446744073709551614", reached: true},
		{have: "4294967295-4294967295-1", want: "4294967295-1-1", reached: true},
		{have: " 0-1-100 , 1-2-7 ", want: "0-1-100", reached: true},
		{have: "0-1", want: "", bad: true},
		{have: "0-1-2-3", want: "", bad: true},
		{have: "0-1-x", want: "", bad: true},
		{have: "a-1-1", want: "", bad: true},
		{have: "-1-1", want: "", bad: true},
		{have: "0--1", want: "", bad: true},
		{have: "0-1-+1", want: "", bad: true},
		{have: "0-1-1,", want: "", bad: true},
		{have: ",0-1-1", want: "", bad: true},
		{have: "0-1-1,,1-1-1", want: "", bad: true},
		{have: "0-1-1,0-2-2", want: "", bad: true},
		{have: "4294967296-1-1", want: "", bad: true},
		{have: "0-4294967296-1", want: "", bad: true},
		{have: "0-1-18446744073709551616", want: "", bad: true},
		{have: "0/3000148", want: "", bad: true},
		{have: "", want: "0-1-1;", bad: true},

		// MySQL GTID sets.
		{have: uuidA + ":1-5", want: "", reached: true},
		{have: "", want: uuidA + ":1", reached: false},
		{have: uuidA + ":1-5", want: uuidA + ":1-5", reached: true},
		{have: uuidA + ":1-5", want: uuidA + ":3", reached: true},
		{have: uuidA + ":1-5", want: uuidA + ":1-6", reached: false},
		{have: uuidA + ":1-5:7-9", want: uuidA + ":6", reached: false},
		{have: uuidA + ":1-5:7-9", want: uuidA + ":5-7", reached: false},
		{have: uuidA + ":1-5:6-9", want: uuidA + ":5-7", reached: true}, // touching intervals merge
		{have: uuidA + ":7-9:1-6", want: uuidA + ":2-8", reached: true},
		{have: strings.ToUpper(uuidA) + ":1-5", want: uuidA + ":1-5", reached: true},
		{have: uuidA + ":1-5,\n" + uuidB + ":1-3", want: uuidB + ":2," + uuidA + ":4", reached: true},
		{have: uuidA + ":1-5", want: uuidA + ":1," + uuidB + ":1", reached: false},
		{have: uuidA + ":1-5:tag_1:1-3", want: uuidA + ":TAG_1:2", reached: true},
		{have: uuidA + ":1-5", want: uuidA + ":tag_1:2", reached: false},
		{have: uuidA + ":tag_1:1-3", want: uuidA + ":1", reached: false},
		{have: uuidA + ":1-18446744073709551615", want: uuidA + ":18446744073709551615", reached: true},
		{have: uuidA, want: "", bad: true},
		{have: uuidA + ":", want: "", bad: true},
		{have: uuidA + ":0", want: "", bad: true},
		{have: uuidA + ":5-1", want: "", bad: true},
		{have: uuidA + ":1-", want: "", bad: true},
		{have: uuidA + ":tag", want: "", bad: true},
		{have: uuidA + ":tag:tag2:1", want: "", bad: true},
		{have: uuidA + ":1tag:1", want: "", bad: true},
		{have: uuidA + ":1-5,", want: "", bad: true},
		{have: "3E11FA4771CA11E19E33C80AA9429562:1-5", want: "", bad: true},
		{have: "3E11FA47-71CA-11E1-9E33-C80AA942956G:1-5", want: "", bad: true},
		// One of each.
		{have: "0-1-1", want: uuidA + ":1-5", bad: true},
		{have: uuidA + ":1-5", want: "0-1-1", bad: true},
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
	for _, s := range [][2]string{
		{"", ""}, {"0-1-100", "0-1-100"}, {"0-1-100,1-2-7", "1-2-8"}, {"0-1-1,0-2-2", "x"},
		{uuidA + ":1-5:7", uuidA + ":3"}, {uuidA + ":1-5,\n" + uuidB + ":t:1-3", uuidB + ":T:2"},
		{uuidA + ":1-5", "0-1-1"},
	} {
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
		if ok, err := o.Reached(have, have); !ok || err != nil {
			t.Errorf("Reached(%q, %q) = %v, %v, want true", have, have, ok, err)
		}
		// Everything reaches the empty position; the empty position
		// reaches only positions without domains.
		if ok, err := o.Reached(have, ""); !ok || err != nil {
			t.Errorf("Reached(%q, \"\") = %v, %v, want true", have, ok, err)
		}
		if hw && !isGTIDSet(have) && !isGTIDSet(want) {
			// By definition: have is at least as far along in
			// every domain of want.
			w, _ := parseGTIDPos(want)
			h, _ := parseGTIDPos(have)
			for d, seq := range w {
				if h[d] < seq {
					t.Errorf("Reached(%q, %q) = true, but domain %d is behind", have, want, d)
				}
			}
		}
	})
}

func TestReadOnly(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{err: &mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --read-only option so it cannot execute this statement"}, want: true},
		{err: fmt.Errorf("exec: %w", &mysql.MySQLError{Number: 1290}), want: true},
		{err: &mysql.MySQLError{Number: 1792}, want: true},
		{err: &mysql.MySQLError{Number: 1836}, want: true},
		{err: &mysql.MySQLError{Number: 1146}, want: false},
		{err: &mysql.MySQLError{Number: 1142}, want: false},
		{err: errors.New("running with the --read-only option"), want: false},
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
// replica's reaches it once applied, and not while its SQL thread is
// stopped; a write on the replica by a user with database-level grants
// fails with a ReadOnly error.
func TestClusterPosition(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("starts a MariaDB primary and replica (needs root, not -short)")
	}
	c := dbtest.StartMariaDBCluster(t, 1)
	o, err := NewOpener(qorb.DriverConfig{User: dbtest.User, Password: dbtest.Password, Database: dbtest.Database})
	if err != nil {
		t.Fatal(err)
	}
	primary := connect(t, o, resolver.Backend{Host: "127.0.0.1", Addr: c.Primary.Addr()})
	replica := connect(t, o, resolver.Backend{Host: "127.0.0.1", Addr: c.Replicas[0].Addr()})
	position := func(name string, cn driver.Conn) string {
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
	// applied waits until the replica's SQL thread has applied pos:
	// WaitReplicated waits on @@gtid_binlog_pos, which a transaction can
	// reach a moment before it commits and enters @@gtid_slave_pos.
	applied := func(pos string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		// Position checked pos: it holds only digits, '-' and ','.
		row, err := queryRow(ctx, replica, fmt.Sprintf("SELECT MASTER_GTID_WAIT('%s', 20)", pos))
		if err != nil {
			t.Fatalf("MASTER_GTID_WAIT(%q): %v", pos, err)
		}
		if n, err := asInt(row[0]); err != nil || n != 0 {
			t.Fatalf("MASTER_GTID_WAIT(%q) = %v, %v, want 0", pos, row[0], err)
		}
	}

	before := position("primary", primary)
	exec(t, primary, "CREATE TABLE positions (n int)")
	exec(t, primary, "INSERT INTO positions VALUES (1)")
	after := position("primary", primary)
	if reached(before, after) || !reached(after, before) {
		t.Errorf("primary's Position did not advance with a write: %q before, %q after", before, after)
	}

	c.WaitReplicated(t)
	applied(after)
	if r := position("replica", replica); !reached(r, after) {
		t.Errorf("replicated replica's Position %q does not reach the primary's %q", r, after)
	}

	c.Replicas[0].PauseReplay(t)
	exec(t, primary, "INSERT INTO positions VALUES (2)")
	latest := position("primary", primary)
	if r := position("replica", replica); reached(r, latest) {
		t.Errorf("paused replica's Position %q reaches the primary's %q", r, latest)
	}
	c.Replicas[0].ResumeReplay(t)
	c.WaitReplicated(t)
	applied(latest)
	if r := position("replica", replica); !reached(r, latest) {
		t.Errorf("resumed replica's Position %q does not reach the primary's %q", r, latest)
	}

	t.Logf("primary at %q, %q, %q", before, after, latest)

	err = execute(t.Context(), replica, "INSERT INTO positions VALUES (3)")
	if err == nil || !o.ReadOnly(err) {
		t.Errorf("write on the replica: ReadOnly(%v) = false, want an error for which it is true", err)
	}
	err = execute(t.Context(), primary, "INSERT INTO no_such_table VALUES (1)")
	if err == nil || o.ReadOnly(err) {
		t.Errorf("bad write on the primary: ReadOnly(%v) = true, want an error for which it is false", err)
	}
}
