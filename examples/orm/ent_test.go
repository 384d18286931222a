package orm_test

import (
	"testing"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
)

// TestEnt: ent's SQL driver wraps any *sql.DB with the dialect of the
// server behind it; a generated client takes that driver with
// ent.NewClient(ent.Driver(drv)). Without generating a client, the test
// runs what a generated one runs on the driver: its schema migration
// (Client.Schema.Create is schema.NewMigrate(drv).Create over the
// generated tables), statements built by ent's SQL builder, and a
// transaction.
func TestEnt(t *testing.T) {
	ctx := t.Context()
	drv := entsql.OpenDB(dialect.Postgres, openDB(t)) // the line README quotes

	// The tables a generated migrate package declares for a Note schema
	// with one string field.
	columns := []*schema.Column{
		{Name: "id", Type: field.TypeInt, Increment: true},
		{Name: "body", Type: field.TypeString},
	}
	notes := &schema.Table{Name: "notes", Columns: columns, PrimaryKey: columns[:1]}
	m, err := schema.NewMigrate(drv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Create(ctx, notes); err != nil {
		t.Fatalf("schema migration: %v", err)
	}

	pg := entsql.Dialect(dialect.Postgres)
	tx, err := drv.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, body := range []string{"one", "two"} {
		q, args := pg.Insert("notes").Columns("body").Values(body).Returning("id").Query()
		var rows entsql.Rows
		if err := tx.Query(ctx, q, args, &rows); err != nil {
			t.Fatalf("insert: %v", err)
		}
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		rows.Close()
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}

	q, args := pg.Select("body").From(entsql.Table("notes")).Where(entsql.EQ("id", ids[1])).Query()
	var rows entsql.Rows
	if err := drv.Query(ctx, q, args, &rows); err != nil {
		t.Fatalf("select: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			t.Fatal(err)
		}
		got = append(got, body)
	}
	if len(ids) != 2 || len(got) != 1 || got[0] != "two" {
		t.Errorf("inserted ids %v, selected %q; want 2 ids and [two]", ids, got)
	}
}
