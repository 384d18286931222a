package orm_test

import (
	"embed"
	"errors"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// TestMigrate: golang-migrate's pgx/v5 database driver takes any *sql.DB
// with WithInstance (its DSN form would open pgx itself, not qorb), and
// holds one connection, with its advisory lock, while it migrates.
func TestMigrate(t *testing.T) {
	db := openDB(t)
	src, err := iofs.New(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	driver, err := pgx.WithInstance(db, &pgx.Config{}) // the lines README quotes
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if err := m.Up(); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if err := m.Up(); !errors.Is(err, migrate.ErrNoChange) {
		t.Errorf("second Up = %v, want ErrNoChange", err)
	}
	version, dirty, err := m.Version()
	if err != nil || version != 2 || dirty {
		t.Errorf("Version = %d, dirty %v, %v; want 2, clean", version, dirty, err)
	}
	var author string
	if err := db.QueryRowContext(t.Context(), "INSERT INTO notes (body) VALUES ('x') RETURNING author").Scan(&author); err != nil || author != "nobody" {
		t.Errorf("after both migrations, a note's author = %q, %v; want the default nobody", author, err)
	}
	if err := m.Steps(-1); err != nil {
		t.Fatalf("Steps(-1): %v", err)
	}
	if version, _, _ := m.Version(); version != 1 {
		t.Errorf("after one step down, version %d, want 1", version)
	}
}
