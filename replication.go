package qorb

import (
	"context"
	"database/sql"
	"errors"
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
	c, err := ConnectorOf(db)
	if err != nil {
		return "", err
	}
	return c.WriteToken(ctx)
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
