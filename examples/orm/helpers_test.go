package orm_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	_ "github.com/qorb-go/qorb/dialects/pgdialect" // registers postgres:// for sql.Open("qorb", …)
)

// serverDSN is the local PostgreSQL server, as a qorb DSN.
const serverDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_conns=4"

// schemaDSN creates a schema of its own for the test, dropped when it
// ends (other tests use the same server at the same time), and returns a
// qorb DSN whose sessions work in it: search_path passes through qorb to
// the driver as a run-time parameter.
func schemaDSN(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "qorb_orm_" + hex.EncodeToString(b)
	admin, err := sql.Open("qorb", serverDSN)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema (is PostgreSQL up on 127.0.0.1:5432? scripts/setup starts it): %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return serverDSN + "&search_path=" + schema
}

// openDB opens the test's schema through qorb, closed when the test ends.
func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("qorb", schemaDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
