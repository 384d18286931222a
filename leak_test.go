package qorb

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// holdConn takes a connection of db and keeps it: its frame must be in the
// leak warning.
func holdConn(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	return db.Conn(ctx)
}

// TestLeakWarningFromDSN: with pool_leak_threshold in the DSN and no
// logger, a connection held past it is logged once at Warn to
// slog.Default, with the stack of the code that took it, and counted.
func TestLeakWarningFromDSN(t *testing.T) {
	var buf lockedBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)

	o := &fakeOpener{}
	db, err := sql.Open("qorb", "fake://u@127.0.0.1:7001/d?pool_leak_threshold=50ms&fake_opener="+registerOpener(t, o))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := ConnectorOf(db)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := holdConn(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Leaks == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no leak counted after 10s; log:\n%s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := buf.String()
	for _, want := range []string{"level=WARN", "pool: connection held past the leak threshold", "github.com/qorb-go/qorb.holdConn()", "leak_test.go:"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not contain %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "leak threshold"); n != 1 {
		t.Errorf("%d leak warnings, want 1:\n%s", n, out)
	}
}
