package pgdialect

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qorb-go/qorb"
)

// ErrBadPosition is returned, wrapped, by [Opener.Reached] for text that is
// not a WAL position ("X/Y", two hexadecimal numbers of up to 8 digits).
var ErrBadPosition = errors.New("pgdialect: not a WAL position")

var _ qorb.Replicator = (*Opener)(nil)

// positionQuery reads the WAL position in one round trip. A standby in
// recovery reports what it has replayed: pg_last_wal_replay_lsn(), which is
// what its queries see, not pg_last_wal_receive_lsn(), which may be ahead
// of it. Any other server reports the end of the WAL it has written,
// pg_current_wal_lsn(), which fails during recovery and so is asked only
// when pg_is_in_recovery() is false (CASE evaluates only the branch it
// takes). pg_last_wal_replay_lsn() is NULL only on a server that has
// replayed nothing; 0/0 says the same and reaches no position a write
// returns. Both functions may be called by any user.
const positionQuery = `SELECT coalesce(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, '0/0')`

// Position returns the server's WAL position (an LSN such as "0/3000148"):
// on a primary the end of the WAL it has written, on a standby the end of
// what it has replayed, so that a standby whose Position reaches a
// primary's shows every transaction committed on the primary before that.
// It uses the simple protocol, so it prepares nothing on the connection.
//
// Positions compare across a failover: a promoted standby writes on from
// the position it reached. A position taken on the old primary past that
// point names writes that were lost, and the new primary's later writes
// reach it by number all the same.
func (o *Opener) Position(ctx context.Context, c driver.Conn) (string, error) {
	pc, err := conn(c)
	if err != nil {
		return "", err
	}
	ctx, cancel, err := roundTrip(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	res, err := pc.PgConn().Exec(ctx, positionQuery).ReadAll()
	if err != nil {
		return "", fmt.Errorf("pgdialect: position: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return "", errors.New("pgdialect: position: the WAL position query returned no value")
	}
	pos := string(res[0].Rows[0][0])
	if _, err := parseLSN(pos); err != nil {
		return "", fmt.Errorf("pgdialect: position: %w", err)
	}
	return pos, nil
}

// Reached reports whether WAL position have is at or past want, comparing
// them as numbers. It fails with [ErrBadPosition] unless both are LSNs in
// PostgreSQL's text form, such as "0/3000148" (either case).
func (o *Opener) Reached(have, want string) (bool, error) {
	h, err := parseLSN(have)
	if err != nil {
		return false, err
	}
	w, err := parseLSN(want)
	if err != nil {
		return false, err
	}
	return h >= w, nil
}

// parseLSN parses an LSN's text form "X/Y", each of X and Y 1 to 8
// hexadecimal digits, as PostgreSQL's pg_lsn input does.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if ok && validLSNHalf(hi) && validLSNHalf(lo) {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if err1 == nil && err2 == nil {
			return h<<32 | l, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrBadPosition, s)
}

// validLSNHalf reports whether s is 1 to 8 hexadecimal digits.
func validLSNHalf(s string) bool {
	if len(s) == 0 || len(s) > 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// sqlstateReadOnly is read_only_sql_transaction.
const sqlstateReadOnly = "25006"

// ReadOnly reports whether err is, or wraps, a [*pgconn.PgError] with
// SQLSTATE 25006 (read_only_sql_transaction). A standby raises it for
// every write ("cannot execute INSERT in a read-only transaction") and for
// commands it cannot run during recovery ("cannot execute LOCK TABLE
// during recovery"). A primary raises it too in a read-only transaction,
// as with default_transaction_read_only=on, which libpq's
// target_session_attrs=read-write also counts as not writable. Other
// errors of class 25 (invalid transaction state, such as 25P02, a failed
// transaction) and recovery errors that are not about writes (55000,
// "recovery is in progress") are not read-only errors.
func (o *Opener) ReadOnly(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == sqlstateReadOnly
}
