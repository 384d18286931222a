package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb/dialects/pgdialect/qorbpgx"
)

// TestRun runs the example against the local PostgreSQL server
// (scripts/setup starts it): it reads every row back, and leaves no table
// behind.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := qorbpgx.New(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_lag=2s&target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b := make([]byte, 4)
	rand.Read(b)
	table := "qorb_pgx_example_" + hex.EncodeToString(b)

	var out strings.Builder
	if err := run(ctx, p, table, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"an acquired connection stayed on one session: true",
		`read "copied" from the server on port 5432`,
		`read "in a transaction" from the server on port 5432`,
		`read "batched!" from the server on port 5432`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output:\n%s\nwant %s", out.String(), want)
		}
	}
	var left bool
	if err := p.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left {
		t.Errorf("table %s is still there after the example", table)
	}
}
