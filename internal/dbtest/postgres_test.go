package dbtest

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// backendPort returns the port of the server that answers on db.
func backendPort(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var port int
	if err := db.QueryRowContext(ctx, query).Scan(&port); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return port
}

func TestStartPostgres(t *testing.T) {
	start := time.Now()
	pgs := StartPostgres(t, 3)
	t.Logf("3 PostgreSQL servers in %v", time.Since(start))
	seen := map[int]bool{}
	for _, p := range pgs {
		for _, dsn := range []string{p.DSN(), p.URL()} {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			if got := backendPort(t, db, "SELECT inet_server_port()"); got != p.Port() {
				t.Errorf("%s: inet_server_port() = %d, want %d", p.Name(), got, p.Port())
			}
			db.Close()
		}
		seen[p.Port()] = true
	}
	if len(seen) != 3 {
		t.Errorf("ports %v, want 3 distinct", seen)
	}
}
