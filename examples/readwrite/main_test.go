package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example against the local PostgreSQL server
// (scripts/setup starts it): it reads its row back, and leaves no table
// behind.
func TestRun(t *testing.T) {
	db, err := sql.Open("qorb", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_lag=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b := make([]byte, 4)
	rand.Read(b)
	table := "qorb_example_" + hex.EncodeToString(b)

	var out strings.Builder
	if err := run(ctx, db, table, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `read row 1 back ("hello") from the server on port 5432`) {
		t.Errorf("output:\n%s\nwant the row read back from the local server", out.String())
	}
	var left bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left {
		t.Errorf("table %s is still there after the example", table)
	}
}
