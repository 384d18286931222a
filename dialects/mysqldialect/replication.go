package mysqldialect

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
)

// Errors of the [qorb.Replicator] methods, returned wrapped, to be matched
// with [errors.Is].
var (
	// ErrBadPosition: [Opener.Reached] was given text that is neither a
	// MariaDB GTID position nor a MySQL GTID set, or one of each.
	ErrBadPosition = errors.New("mysqldialect: not a GTID position")
	// ErrNoGTIDPosition: [Opener.Position] found a server without GTIDs:
	// a MySQL server whose gtid_mode is not ON, or one that has neither
	// MariaDB's nor MySQL's GTID variables.
	ErrNoGTIDPosition = errors.New("mysqldialect: the server has no GTID position")
)

var _ qorb.Replicator = (*Opener)(nil)

// positionQuery reads, in one round trip, whether the server is read-only
// (what [Opener.Role] calls a replica) and both of its GTID positions; see
// [Opener.Position] for which one counts. Global system variables need no
// privilege to be read, so a user with database-level grants only can run
// it.
const positionQuery = "SELECT @@global.read_only, @@global.gtid_binlog_pos, @@global.gtid_slave_pos"

// Position returns the server's MariaDB GTID position, such as
// "0-1-100,1-2-7" (domain-server-seqno for each replication domain; empty
// for a server that has logged nothing). On a read-only server, a replica,
// it is @@gtid_slave_pos, the transactions its replication SQL thread has
// applied; on any other server, a primary, it is @@gtid_binlog_pos, every
// transaction in its binary log.
//
// On a replica, @@gtid_slave_pos is the right one even with
// log_slave_updates, which puts replicated transactions in the replica's
// binary log as well. MariaDB moves @@gtid_slave_pos after the applied
// transaction commits (MASTER_GTID_WAIT waits on it), whereas a
// transaction enters @@gtid_binlog_pos when it is written to the binary
// log, before the storage engine commits it: a replica could report a
// position whose rows its queries cannot see yet. And only replicated
// transactions move @@gtid_slave_pos: a local write on the replica (by a
// user whom read_only does not stop) gets a GTID with the replica's own
// server id, whose sequence number would make the replica look further
// along in the primary's domain than it is; @@gtid_current_pos would mix
// those in too. On a primary, @@gtid_slave_pos is empty or stale (from
// when it was a replica), and @@gtid_binlog_pos is what its replicas
// replicate; a transaction there may be logged a moment before it is
// visible, which makes a position ask for slightly more, never less.
//
// MySQL has neither variable: there (after a first query that fails)
// Position returns @@gtid_executed, a GTID set such as
// "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", without the white space
// MySQL puts in it. It holds every transaction the server has committed,
// written or applied, on a primary and a replica alike; MySQL's own
// WAIT_FOR_EXECUTED_GTID_SET waits on it. It needs gtid_mode=ON:
// otherwise transactions get no GTIDs, no position can say what a replica
// has applied, and Position fails with [ErrNoGTIDPosition].
func (o *Opener) Position(ctx context.Context, c driver.Conn) (string, error) {
	row, err := queryRow(ctx, c, positionQuery)
	if isServerError(err, errUnknownSystemVariable) {
		return mysqlPosition(ctx, c)
	}
	if err != nil {
		return "", fmt.Errorf("mysqldialect: position: %w", err)
	}
	ro, err := asInt(row[0])
	if err != nil {
		return "", fmt.Errorf("mysqldialect: position: @@global.read_only: %w", err)
	}
	name, v := "@@global.gtid_binlog_pos", row[1]
	if ro != 0 {
		name, v = "@@global.gtid_slave_pos", row[2]
	}
	pos, err := asString(v)
	if err == nil {
		_, err = parseGTIDPos(pos)
	}
	if err != nil {
		return "", fmt.Errorf("mysqldialect: position: %s: %w", name, err)
	}
	return pos, nil
}

// mysqlPositionQuery reads a MySQL server's GTID mode and GTID set; any
// user may read both.
const mysqlPositionQuery = "SELECT @@global.gtid_mode, @@global.gtid_executed"

// mysqlPosition returns the GTID set of a MySQL server; see
// [Opener.Position].
func mysqlPosition(ctx context.Context, c driver.Conn) (string, error) {
	row, err := queryRow(ctx, c, mysqlPositionQuery)
	if isServerError(err, errUnknownSystemVariable) {
		return "", fmt.Errorf("mysqldialect: position: %w: %w", ErrNoGTIDPosition, err)
	}
	if err != nil {
		return "", fmt.Errorf("mysqldialect: position: %w", err)
	}
	mode, err := asString(row[0])
	if err != nil {
		return "", fmt.Errorf("mysqldialect: position: @@global.gtid_mode: %w", err)
	}
	if !strings.EqualFold(mode, "ON") {
		return "", fmt.Errorf("mysqldialect: position: %w (gtid_mode is %s, not ON)", ErrNoGTIDPosition, mode)
	}
	pos, err := asString(row[1])
	if err == nil {
		pos = strings.Join(strings.Fields(pos), "")
		_, err = parseGTIDSet(pos)
	}
	if err != nil {
		return "", fmt.Errorf("mysqldialect: position: @@global.gtid_executed: %w", err)
	}
	return pos, nil
}

// asString reads a text column.
func asString(v driver.Value) (string, error) {
	switch v := v.(type) {
	case []byte:
		return string(v), nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("want text, got %T", v)
}

// Reached reports whether GTID position have includes want.
//
// For MariaDB positions, domain-server-seqno for distinct domains joined
// by commas, that is whether, in every replication domain of want, have's
// sequence number is at least want's. A domain missing from have has
// applied nothing of it. The server ids do not count: within a domain,
// sequence numbers grow across failovers, whichever server wrote them.
//
// For MySQL GTID sets (text with a colon, as "uuid:1-5:7,uuid2:tag:1-3"),
// that is whether set have holds every transaction of set want.
//
// An empty position holds nothing, so every position reaches it. Reached
// fails with [ErrBadPosition] for anything else, and for a MariaDB
// position compared with a MySQL set.
func (o *Opener) Reached(have, want string) (bool, error) {
	if isGTIDSet(have) || isGTIDSet(want) {
		h, err := parseGTIDSet(have)
		if err != nil {
			return false, err
		}
		w, err := parseGTIDSet(want)
		if err != nil {
			return false, err
		}
		return h.contains(w), nil
	}
	h, err := parseGTIDPos(have)
	if err != nil {
		return false, err
	}
	w, err := parseGTIDPos(want)
	if err != nil {
		return false, err
	}
	for domain, seq := range w {
		if h[domain] < seq {
			return false, nil
		}
	}
	return true, nil
}

// parseGTIDPos maps each replication domain of a MariaDB GTID position to
// its sequence number.
func parseGTIDPos(pos string) (map[uint32]uint64, error) {
	out := make(map[uint32]uint64)
	if strings.TrimSpace(pos) == "" {
		return out, nil
	}
	for g := range strings.SplitSeq(pos, ",") {
		domain, seq, err := parseGTID(strings.TrimSpace(g))
		if err != nil {
			return nil, fmt.Errorf("%w: %q", ErrBadPosition, pos)
		}
		if _, dup := out[domain]; dup {
			return nil, fmt.Errorf("%w: %q has domain %d twice", ErrBadPosition, pos, domain)
		}
		out[domain] = seq
	}
	return out, nil
}

// parseGTID parses one GTID, domain-server-seqno, in decimal: a 32-bit
// domain and server id and a 64-bit sequence number. It returns the domain
// and the sequence number; the server id is only checked.
func parseGTID(g string) (domain uint32, seq uint64, err error) {
	d, rest, ok1 := strings.Cut(g, "-")
	s, n, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || !decimal(d) || !decimal(s) || !decimal(n) {
		return 0, 0, errors.New("want domain-server-seqno")
	}
	d64, err := strconv.ParseUint(d, 10, 32)
	if err != nil {
		return 0, 0, err
	}
	if _, err := strconv.ParseUint(s, 10, 32); err != nil {
		return 0, 0, err
	}
	seq, err = strconv.ParseUint(n, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	return uint32(d64), seq, nil
}

// decimal reports whether s is one or more decimal digits.
func decimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MySQL error numbers that say a write was refused because the server, or
// the transaction, is read-only.
const (
	errOptionPreventsStatement = 1290 // ER_OPTION_PREVENTS_STATEMENT
	errReadOnlyTransaction     = 1792 // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
	errReadOnlyMode            = 1836 // ER_READ_ONLY_MODE
)

// ReadOnly reports whether err is, or wraps, a [*mysql.MySQLError] that
// refuses a write because the server is read-only: 1290, which a server
// running with read_only (or super_read_only) returns to a user without
// READ_ONLY ADMIN or SUPER ("running with the --read-only option"); 1792,
// a write in a START TRANSACTION READ ONLY or with
// transaction_read_only set; or 1836 ("Running in read-only mode").
//
// The server also returns 1290 for statements that other options prevent,
// such as SELECT ... INTO OUTFILE under secure_file_priv. ReadOnly does
// not read messages, so it reports those too; what qorb does then, check
// the backend's role again, is harmless.
func (o *Opener) ReadOnly(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case errOptionPreventsStatement, errReadOnlyTransaction, errReadOnlyMode:
		return true
	}
	return false
}
