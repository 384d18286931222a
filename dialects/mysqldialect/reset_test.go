package mysqldialect

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
)

// fakeServerConn is a connection to a server that may lack
// @@in_transaction (MySQL) or RELEASE_ALL_LOCKS() (MariaDB before 10.5).
// It logs the statements it is sent.
type fakeServerConn struct {
	noInTransaction, noReleaseAllLocks bool
	inTransaction                      bool
	log                                []string
}

var (
	_ driver.QueryerContext = (*fakeServerConn)(nil)
	_ driver.ExecerContext  = (*fakeServerConn)(nil)
	_ driver.Validator      = (*fakeServerConn)(nil)
)

func (c *fakeServerConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not here") }
func (c *fakeServerConn) Close() error                        { return nil }
func (c *fakeServerConn) Begin() (driver.Tx, error)           { return nil, errors.New("not here") }
func (c *fakeServerConn) IsValid() bool                       { return true }

func (c *fakeServerConn) ExecContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Result, error) {
	c.log = append(c.log, query)
	return driver.ResultNoRows, nil
}

func (c *fakeServerConn) QueryContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	c.log = append(c.log, query)
	var row []driver.Value
	for _, col := range strings.Split(strings.TrimPrefix(query, "SELECT "), ", ") {
		switch col {
		case "@@in_transaction":
			if c.noInTransaction {
				return nil, &mysql.MySQLError{Number: errUnknownSystemVariable, Message: "Unknown system variable 'in_transaction'"}
			}
			v := int64(0)
			if c.inTransaction {
				v = 1
			}
			row = append(row, v)
		case "RELEASE_ALL_LOCKS()":
			if c.noReleaseAllLocks {
				return nil, &mysql.MySQLError{Number: errNoSuchFunction, Message: "FUNCTION RELEASE_ALL_LOCKS does not exist"}
			}
			row = append(row, []byte("0"))
		}
	}
	return &fakeRows{row: row}, nil
}

type fakeRows struct {
	row  []driver.Value
	done bool
}

func (r *fakeRows) Columns() []string { return make([]string, len(r.row)) }
func (r *fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	copy(dest, r.row)
	return nil
}

// TestResetSteps: what a reset sends to each kind of server, twice in a
// row on the same Opener.
func TestResetSteps(t *testing.T) {
	const (
		combined = "SELECT @@in_transaction, RELEASE_ALL_LOCKS()"
		inTx     = "SELECT @@in_transaction"
		unlock   = "UNLOCK TABLES"
		release  = "SELECT RELEASE_ALL_LOCKS()"
	)
	tests := []struct {
		name          string
		conn          fakeServerConn
		first, second []string
		err           error
	}{
		{
			name:   "MariaDB 10.5+",
			first:  []string{combined, unlock},
			second: []string{combined, unlock},
		},
		{
			name:   "MySQL: no @@in_transaction",
			conn:   fakeServerConn{noInTransaction: true},
			first:  []string{combined, inTx, "ROLLBACK", unlock, release},
			second: []string{inTx, "ROLLBACK", unlock, release},
		},
		{
			name:   "older MariaDB: no RELEASE_ALL_LOCKS()",
			conn:   fakeServerConn{noReleaseAllLocks: true},
			first:  []string{combined, inTx, unlock, release},
			second: []string{inTx, unlock, release},
		},
		{
			name:   "inside a transaction",
			conn:   fakeServerConn{inTransaction: true},
			first:  []string{combined},
			second: []string{combined},
			err:    ErrInTransaction,
		},
		{
			name:   "inside a transaction, older MariaDB",
			conn:   fakeServerConn{inTransaction: true, noReleaseAllLocks: true},
			first:  []string{combined, inTx},
			second: []string{inTx},
			err:    ErrInTransaction,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOpener(qorb.DriverConfig{})
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range [][]string{tt.first, tt.second} {
				c := tt.conn
				err := o.Recycle(t.Context(), &c, true)
				if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
					t.Errorf("Recycle #%d = %v, want %v", i+1, err, tt.err)
				}
				if !reflect.DeepEqual(c.log, want) {
					t.Errorf("Recycle #%d sent %q, want %q", i+1, c.log, want)
				}
			}
		})
	}
}

// TestRecycleNoReset: without pool_reset_session, Recycle sends nothing.
func TestRecycleNoReset(t *testing.T) {
	o, err := NewOpener(qorb.DriverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeServerConn{inTransaction: true}
	if err := o.Recycle(t.Context(), c, false); err != nil || len(c.log) > 0 {
		t.Errorf("Recycle = %v, sent %q; want nil and nothing", err, c.log)
	}
}
