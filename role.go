package qorb

import (
	"context"
	"fmt"
	"strconv"
)

// Role says which backends an operation may use.
type Role uint8

// The roles an operation can ask for.
const (
	// RoleAny: any backend.
	RoleAny Role = iota
	// RolePrimary: only the primary, the backend that takes writes.
	RolePrimary
	// RoleReplica: only replicas.
	RoleReplica
	// RolePreferReplica: a replica, or the primary when no replica is
	// online.
	RolePreferReplica
)

var roleNames = [...]string{
	RoleAny:           "any",
	RolePrimary:       "primary",
	RoleReplica:       "replica",
	RolePreferReplica: "prefer-replica",
}

// String returns "any", "primary", "replica" or "prefer-replica".
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// ParseTargetSessionAttrs maps a libpq target_session_attrs value to a
// role: read-write and primary to RolePrimary, read-only and standby to
// RoleReplica, prefer-standby to RolePreferReplica, any to RoleAny.
func ParseTargetSessionAttrs(s string) (Role, error) {
	switch s {
	case "any", "":
		return RoleAny, nil
	case "read-write", "primary":
		return RolePrimary, nil
	case "read-only", "standby":
		return RoleReplica, nil
	case "prefer-standby":
		return RolePreferReplica, nil
	}
	return 0, fmt.Errorf("target_session_attrs %q: want any, read-write, primary, read-only, standby or prefer-standby", s)
}

type roleKey struct{}

type repeatKey struct{}

// Repeatable returns a context whose queries are safe to run twice: a
// query that fails because its connection died before it returned rows is
// run again on a fresh connection (through database/sql's retry of
// driver.ErrBadConn), and so on a healthy backend, instead of failing.
// Reads with a replica role (RoleReplica, RolePreferReplica) are
// repeatable without it. It has no effect on Exec, or inside a
// transaction or a sql.Conn, which database/sql does not retry. The
// native pgx pool (package dialects/pgdialect/qorbpgx) honours it the
// same way for its Query and QueryRow.
func Repeatable(ctx context.Context) context.Context {
	return context.WithValue(ctx, repeatKey{}, true)
}

// repeatable reports whether ctx's queries are safe to run twice.
func repeatable(ctx context.Context, def Role) bool {
	if ok, _ := ctx.Value(repeatKey{}).(bool); ok {
		return true
	}
	r := roleFrom(ctx, def)
	return r == RoleReplica || r == RolePreferReplica
}

// WithRole returns a context that makes the operations run with it use
// backends of role r, instead of the connector's default.
func WithRole(ctx context.Context, r Role) context.Context {
	return context.WithValue(ctx, roleKey{}, r)
}

// roleFrom returns the role ctx asks for, or def.
func roleFrom(ctx context.Context, def Role) Role {
	if r, ok := ctx.Value(roleKey{}).(Role); ok {
		return r
	}
	return def
}
