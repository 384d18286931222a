package qorbpgx

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// rows are the rows of [Pool.Query]: pgx's, whose first row the Pool has
// read already, and which give their connection back once read to the
// end or closed.
type rows struct {
	r      pgx.Rows
	pc     *pconn // nil once released
	peeked bool   // the first row is read but not yet returned by Next
	err    error
}

var _ pgx.Rows = (*rows)(nil)

func (r *rows) Next() bool {
	if r.peeked {
		r.peeked = false
		return true
	}
	if r.pc == nil {
		return false
	}
	if r.r.Next() {
		return true
	}
	r.Close()
	return false
}

// Close closes the rows and gives their connection back.
func (r *rows) Close() {
	r.peeked = false
	if r.pc == nil {
		return
	}
	r.r.Close()
	r.err = r.pc.check(r.r.Err())
	r.pc.release()
	r.pc = nil
}

func (r *rows) Err() error {
	if r.err != nil || r.pc == nil {
		return r.err
	}
	return r.r.Err()
}

func (r *rows) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if err != nil {
		r.Close()
	}
	return err
}

func (r *rows) Values() ([]any, error) {
	v, err := r.r.Values()
	if err != nil {
		r.Close()
	}
	return v, err
}

func (r *rows) CommandTag() pgconn.CommandTag                { return r.r.CommandTag() }
func (r *rows) FieldDescriptions() []pgconn.FieldDescription { return r.r.FieldDescriptions() }
func (r *rows) RawValues() [][]byte                          { return r.r.RawValues() }
func (r *rows) Conn() *pgx.Conn                              { return r.r.Conn() }
func (r *rows) TypeMap() *pgtype.Map                         { return r.r.TypeMap() }

// errRows are the rows of a query that failed.
type errRows struct{ err error }

func (errRows) Close()                                       {}
func (e errRows) Err() error                                 { return e.err }
func (errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (errRows) Next() bool                                   { return false }
func (e errRows) Scan(...any) error                          { return e.err }
func (e errRows) Values() ([]any, error)                     { return nil, e.err }
func (errRows) RawValues() [][]byte                          { return nil }
func (errRows) Conn() *pgx.Conn                              { return nil }
func (errRows) TypeMap() *pgtype.Map                         { return nil }

// row is the row of [Pool.QueryRow]: pgx's rows, whose first row the Pool
// has read already; Scan reads it and gives the connection back.
type row struct {
	r  pgx.Rows
	pc *pconn // nil once scanned
}

func (r *row) Scan(dest ...any) error {
	if r.pc == nil {
		return errScanned
	}
	pc := r.pc
	r.pc = nil
	// pgx records a failed Scan as the rows' error, and Close reads the
	// rest of the result.
	_ = r.r.Scan(dest...)
	r.r.Close()
	err := pc.check(r.r.Err())
	// The handle lives on in its connection's slab: let go of pgx's rows,
	// which hold the query's context and arguments.
	r.r = nil
	pc.release()
	return err
}

// errRow is the row of a query that failed or found no row.
type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

// tx is a transaction of [Pool.Begin]: it gives its connection back when
// it ends. Savepoints (its Begin) are pgx's own.
type tx struct {
	pgx.Tx
	pc *pconn // nil once ended
}

func (t *tx) Commit(ctx context.Context) error {
	return t.end(t.Tx.Commit(ctx))
}

func (t *tx) Rollback(ctx context.Context) error {
	return t.end(t.Tx.Rollback(ctx))
}

// end gives the connection back, once, after a Commit or Rollback that
// failed with err.
func (t *tx) end(err error) error {
	if t.pc == nil {
		return err
	}
	pc := t.pc
	t.pc = nil
	err = pc.check(err)
	pc.release()
	return err
}

func (t *tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := t.Tx.Exec(ctx, sql, args...)
	if t.pc != nil {
		err = t.pc.check(err)
	}
	return tag, err
}

// batch is the results of [Pool.SendBatch]: Close gives the connection
// back, unless the batch began a transaction, which then holds it.
type batch struct {
	pgx.BatchResults
	pc *pconn // nil once released, or when tx holds it
	tx *tx
}

func (b *batch) Close() error {
	err := b.BatchResults.Close()
	if b.pc == nil {
		return err
	}
	pc := b.pc
	b.pc = nil
	err = pc.check(err)
	pc.release()
	return err
}

func (b *batch) Tx() pgx.Tx {
	if b.tx == nil {
		return nil
	}
	return b.tx
}
