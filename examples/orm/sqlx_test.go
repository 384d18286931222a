package orm_test

import (
	"testing"

	"github.com/jmoiron/sqlx"
)

type note struct {
	ID     int64  `db:"id"`
	Body   string `db:"body"`
	Author string `db:"author"`
}

// TestSQLX: sqlx picks its bind variables by driver name, and knows
// nothing of "qorb" (it would send ?, which PostgreSQL rejects), so the
// *sql.DB qorb opened is wrapped under the name of the driver behind it:
// "pgx" ($1, $2, …) for PostgreSQL. Then NamedExec, Rebind, In and
// Select work as they do on a plain pgx database.
func TestSQLX(t *testing.T) {
	ctx := t.Context()
	db := sqlx.NewDb(openDB(t), "pgx") // the line README quotes

	db.MustExecContext(ctx, "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL, author text NOT NULL)")
	for _, n := range []note{{Body: "one", Author: "ann"}, {Body: "two", Author: "bob"}, {Body: "three", Author: "ann"}} {
		if _, err := db.NamedExecContext(ctx, "INSERT INTO notes (body, author) VALUES (:body, :author)", n); err != nil {
			t.Fatalf("NamedExec: %v", err)
		}
	}
	if got := db.Rebind("SELECT * FROM notes WHERE author = ? AND body <> ?"); got != "SELECT * FROM notes WHERE author = $1 AND body <> $2" {
		t.Errorf("Rebind = %q, want $1 and $2", got)
	}
	q, args, err := sqlx.In("SELECT * FROM notes WHERE body IN (?) ORDER BY id", []string{"one", "three"})
	if err != nil {
		t.Fatal(err)
	}
	var got []note
	if err := db.SelectContext(ctx, &got, db.Rebind(q), args...); err != nil {
		t.Fatalf("Select with In and Rebind: %v", err)
	}
	if len(got) != 2 || got[0].Body != "one" || got[1].Body != "three" || got[1].Author != "ann" {
		t.Errorf("Select = %+v, want notes one and three", got)
	}

	// Under the name "qorb", sqlx sends ? and PostgreSQL rejects it: the
	// reason for the line above.
	plain := sqlx.NewDb(db.DB, "qorb")
	if _, err := plain.NamedExecContext(ctx, "INSERT INTO notes (body, author) VALUES (:body, :author)", note{Body: "x", Author: "y"}); err == nil {
		t.Errorf(`NamedExec through sqlx.NewDb(db, "qorb") worked; README says it does not`)
	}
}
