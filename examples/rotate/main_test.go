package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example against the local MariaDB server
// (scripts/setup starts it): the password changes and every connection
// is replaced by one that logged in with the new one.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, "mysql://root@127.0.0.1:3306/test", "127.0.0.1:3306", &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"connected as qorb_rotate_", "password changed; recycling the", "every connection now logged in with the new password"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output:\n%s\nwant %q", out.String(), want)
		}
	}
}
