package qorb

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// A Token marks a point in the primary's log: everything written before
// it was taken. A read whose context carries it ([WithWriteToken]) goes
// only to a backend that has replayed at least that far, so it sees those
// writes. A token is plain text and may travel, in a cookie say, to the
// next request of the same user.
type Token string

// ErrNoReplication is returned by [WriteToken] when the dialect cannot
// read replication positions.
var ErrNoReplication = errors.New("qorb: the dialect cannot read replication positions")

// WriteToken returns a token for every write the primary has made so far:
// call it after a write commits, and pass the token to later reads with
// [WithWriteToken]. db must be a qorb database.
func WriteToken(ctx context.Context, db *sql.DB) (Token, error) {
	var tok Token
	err := withConn(WithRole(ctx, RolePrimary), db, "WriteToken", func(cn *conn) error {
		rep, ok := cn.c.opener.(Replicator)
		if !ok {
			return ErrNoReplication
		}
		d, err := cn.dc()
		if err != nil {
			return err
		}
		pos, err := rep.Position(ctx, d)
		tok = Token(pos)
		return err
	})
	return tok, err
}

type tokenKey struct{}

// WithWriteToken returns a context whose reads see the writes t covers:
// they go only to a backend that has replayed past t, or, when no replica
// has, to the primary.
func WithWriteToken(ctx context.Context, t Token) context.Context {
	return context.WithValue(ctx, tokenKey{}, t)
}

// tokenFrom returns the token ctx carries, if any.
func tokenFrom(ctx context.Context) (Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(Token)
	return t, ok && t != ""
}

// claimAfter claims a connection for a read that must see the writes tok
// covers: from a backend of role whose position, as last seen, is past
// tok; else from one whose position, asked now, is; else, whatever the
// role, from the primary, which has every write.
func (c *Connector) claimAfter(ctx context.Context, role Role, tok Token) (pool.Claim[*physConn], error) {
	want := string(tok)
	base := c.filter(role)
	if role == RoleAny || role == RolePreferReplica {
		base = nil // the primary has reached every token
	}
	allowed := func(b resolver.Backend) bool { return base == nil || base(b) }
	past := func(b resolver.Backend) bool {
		return allowed(b) && (b.Role == resolver.RolePrimary || c.repl.reached(b.Key(), want))
	}
	if cl, ok := c.pool.TryClaimFiltered(ctx, past); ok {
		return cl, nil
	}
	// Positions may be stale: ask the candidates themselves, each once.
	var tried []resolver.Key
	untried := func(b resolver.Backend) bool {
		return allowed(b) && b.Role != resolver.RolePrimary && !slices.Contains(tried, b.Key())
	}
	for range 8 {
		cl, ok := c.pool.TryClaimFiltered(ctx, untried)
		if !ok {
			break
		}
		pc := cl.Conn()
		pos, err := c.repl.rep.Position(ctx, pc.dc)
		if err == nil {
			if ok, _ := c.repl.rep.Reached(pos, want); ok {
				return cl, nil
			}
		}
		cl.Release()
		tried = append(tried, pc.key)
	}
	// No replica has replayed that far: the primary has.
	return c.pool.ClaimFiltered(ctx, c.primaryFilter)
}
