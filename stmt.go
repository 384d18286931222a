package qorb

import (
	"context"
	"database/sql/driver"
	"errors"
)

// stmt is a prepared statement that outlives the connection it was
// prepared on. database/sql keeps it with a handle, and the handle holds a
// different pooled connection for each operation, so each execution looks
// the statement up in that connection's cache and prepares it there only
// the first time. Executing a prepared statement again and again therefore
// costs no extra round trip.
type stmt struct {
	cn       *conn
	query    string
	numInput int
	closed   bool
}

var (
	_ driver.Stmt             = (*stmt)(nil)
	_ driver.StmtExecContext  = (*stmt)(nil)
	_ driver.StmtQueryContext = (*stmt)(nil)
)

// Close lets the connections deallocate the statement, once no other open
// statement uses its text, beyond the few each keeps cached (see
// stmtcache.go).
func (s *stmt) Close() error {
	if !s.closed {
		s.closed = true
		s.cn.c.stmts.release(s.query)
		if pc := s.cn.pc; pc != nil && pc.mayTrim(&s.cn.c.stmts, s.cn.c.stmtKeep) {
			// The handle holds its connection (a sql.Conn or sql.Tx):
			// release what is beyond the cache now.
			pc.trim(&s.cn.c.stmts, s.cn.c.stmtKeep)
		}
	}
	return nil
}

func (s *stmt) NumInput() int { return s.numInput }

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

// ExecContext runs the statement, prepared again if the schema changed
// under it (see conn.again).
func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	res, err := s.exec(ctx, args)
	if s.cn.again(s.query, err) {
		res, err = s.exec(ctx, args)
	}
	return res, err
}

func (s *stmt) exec(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	ds, err := s.cn.prepared(ctx, s.query)
	if err != nil {
		return nil, err
	}
	var res driver.Result
	if e, ok := ds.(driver.StmtExecContext); ok {
		res, err = e.ExecContext(ctx, args)
	} else {
		var vs []driver.Value
		if vs, err = values(args); err == nil {
			//lint:ignore SA1019 the driver lacks ExecContext
			res, err = ds.Exec(vs)
		}
	}
	return res, s.cn.check(err)
}

// QueryContext runs the statement, prepared again if the schema changed
// under it before it returned rows (see conn.again).
func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := s.runQuery(ctx, args)
	if s.cn.again(s.query, err) {
		rows, err = s.runQuery(ctx, args)
	}
	return rows, err
}

func (s *stmt) runQuery(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	ds, err := s.cn.prepared(ctx, s.query)
	if err != nil {
		return nil, err
	}
	var rows driver.Rows
	if q, ok := ds.(driver.StmtQueryContext); ok {
		rows, err = q.QueryContext(ctx, args)
	} else {
		var vs []driver.Value
		if vs, err = values(args); err == nil {
			//lint:ignore SA1019 the driver lacks QueryContext
			rows, err = ds.Query(vs)
		}
	}
	return rows, s.cn.queryErr(ctx, err)
}

func named(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

func values(args []driver.NamedValue) ([]driver.Value, error) {
	vs := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("qorb: the driver does not take named parameters")
		}
		vs[i] = a.Value
	}
	return vs, nil
}
