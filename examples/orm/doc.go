// Package orm shows qorb under the ORMs and tools that Go programs put
// over database/sql: sqlx, GORM, bun, ent and golang-migrate. Its tests
// are the lines README.md's "Using it with sqlx, GORM, bun, ent,
// golang-migrate" quotes, run against the local PostgreSQL server
// (127.0.0.1:5432, user postgres, database test; scripts/setup starts it).
//
// It is a module of its own, so that none of these libraries becomes a
// dependency of qorb itself; scripts/test runs its tests with the rest.
package orm
