package qorb

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
)

// errStale is the fake's "the statement must be prepared again".
var errStale = errors.New("fake: prepared statement needs to be re-prepared")

// staleOpener is a fakeOpener that recognizes errStale.
type staleOpener struct{ *fakeOpener }

var _ StaleChecker = staleOpener{}

func (staleOpener) StaleStatement(err error) bool { return errors.Is(err, errStale) }

// TestStatementsReleased shows the statement cache's bound: of the
// statements no open sql.Stmt uses, a connection keeps the StmtCache most
// recently used and closes the others; those an open sql.Stmt uses stay.
func TestStatementsReleased(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := &fakeOpener{}
		c := startConnector(t, o, &o.open, Settings{Policy: onePerBackend(1), StmtCache: 2}, backends(1)...)
		db := openDB(t, c)
		ctx := t.Context()
		synctest.Wait()
		fc := o.opened()[0]
		q := func(i int) string { return fmt.Sprintf("UPDATE t%d", i) }
		held, err := db.PrepareContext(ctx, q(0))
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		for i := 1; i <= 10; i++ {
			st, err := db.PrepareContext(ctx, q(i))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
			st.Close()
		}
		if _, err := held.ExecContext(ctx); err != nil { // claims again: trims
			t.Fatal(err)
		}
		for i := 1; i <= 10; i++ {
			closed := fc.ran("Stmt.Close "+q(i)) == 1
			if want := i <= 8; closed != want {
				t.Errorf("statement %d of 10 closed by the program: closed on the connection %v, want %v (the last 2 kept)", i, closed, want)
			}
		}
		if n := fc.ran("Stmt.Close " + q(0)); n != 0 || fc.ran("Prepare "+q(0)) != 1 {
			t.Errorf("the open statement was closed %d times and prepared %d, want 0 and 1", n, fc.ran("Prepare "+q(0)))
		}
		// One kept is found again without a new prepare.
		st, err := db.PrepareContext(ctx, q(10))
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		if n := fc.ran("Prepare " + q(10)); n != 1 {
			t.Errorf("statement kept in the cache prepared %d times, want 1", n)
		}
	})
}

// TestStaleStatementPreparedAgain shows what happens to a statement the
// driver says must be prepared again: outside a transaction it is closed,
// prepared again and run again, and the program sees no error; inside one
// the error reaches the program and the statement is prepared afresh at
// its next use.
func TestStaleStatementPreparedAgain(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := &fakeOpener{}
		c := startConnector(t, staleOpener{o}, &o.open, Settings{Policy: onePerBackend(1)}, backends(1)...)
		db := openDB(t, c)
		ctx := t.Context()
		synctest.Wait()
		fc := o.opened()[0]
		const q = "UPDATE t"
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		o.failNext(errStale)
		if _, err := st.ExecContext(ctx); err != nil {
			t.Errorf("stale statement outside a transaction: %v, want it run again", err)
		}
		if p, cl, ex := fc.ran("Prepare "+q), fc.ran("Stmt.Close "+q), fc.ran("Stmt.Exec "+q); p != 2 || cl != 1 || ex != 2 {
			t.Errorf("prepared %d, closed %d, run %d times; want 2, 1, 2", p, cl, ex)
		}
		o.failNext(errStale)
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Errorf("stale unprepared statement outside a transaction: %v, want it run again", err)
		}

		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		o.failNext(errStale)
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx); !errors.Is(err, errStale) {
			t.Errorf("stale statement in a transaction: %v, want the driver's error", err)
		}
		tx.Rollback()
		if _, err := st.ExecContext(ctx); err != nil {
			t.Errorf("after the transaction: %v", err)
		}
		// Prepared at first, again after the first stale error, after
		// the unprepared run's error closed it too, and after the error
		// in the transaction.
		if p := fc.ran("Prepare " + q); p != 4 {
			t.Errorf("prepared %d times, want 4", p)
		}
	})
}
