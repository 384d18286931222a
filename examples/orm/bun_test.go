package orm_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

type bunNote struct {
	bun.BaseModel `bun:"table:notes"`
	ID            int64  `bun:",pk,autoincrement"`
	Body          string `bun:",notnull"`
}

// TestBun: bun takes any *sql.DB and the dialect of the server behind
// it, so qorb's goes in as it is.
func TestBun(t *testing.T) {
	ctx := t.Context()
	db := bun.NewDB(openDB(t), pgdialect.New()) // the line README quotes

	if _, err := db.NewCreateTable().Model((*bunNote)(nil)).Exec(ctx); err != nil {
		t.Fatalf("create table: %v", err)
	}
	notes := []bunNote{{Body: "one"}, {Body: "two"}}
	if _, err := db.NewInsert().Model(&notes).Exec(ctx); err != nil || notes[0].ID == 0 || notes[1].ID == 0 {
		t.Fatalf("insert = ids %d, %d, %v", notes[0].ID, notes[1].ID, err)
	}
	var got []bunNote
	if err := db.NewSelect().Model(&got).Where("body = ?", "two").Scan(ctx); err != nil {
		t.Fatalf("select: %v", err)
	}
	if len(got) != 1 || got[0].ID != notes[1].ID {
		t.Errorf("select = %+v, want note %d", got, notes[1].ID)
	}
	// A transaction keeps one pooled connection until it ends.
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewUpdate().Model(&bunNote{ID: notes[0].ID, Body: "uno"}).WherePK().Exec(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("RunInTx: %v", err)
	}
	var body string
	if err := db.NewSelect().Model((*bunNote)(nil)).Column("body").Where("id = ?", notes[0].ID).Scan(ctx, &body); err != nil || body != "uno" {
		t.Errorf("after the transaction, body = %q, %v; want uno", body, err)
	}
}
