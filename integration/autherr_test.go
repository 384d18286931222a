package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qorb-go/qorb/internal/dbtest"
)

// wrongPassword is the password the error tests log in with; it must
// show in no error.
const wrongPassword = "S3cr3t-Pa55"

// failFast makes a backend that refuses every login offline at its first
// failure, so that a claim fails within the test's patience.
const failFast = "pool_offline_after=1&pool_claim_timeout=5s&pool_backoff_min=50ms&pool_backoff_max=200ms"

// pingErr pings db and returns its error, which must not be nil.
func pingErr(t *testing.T, db *sql.DB) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := db.PingContext(ctx)
	if err == nil {
		t.Fatal("Ping succeeded, want the server's refusal")
	}
	if strings.Contains(err.Error(), wrongPassword) || strings.Contains(err.Error(), url.QueryEscape(wrongPassword)) {
		t.Errorf("error shows the password: %v", err)
	}
	return err
}

// TestMySQLAccessDeniedError checks that a wrong password, refused by the
// server with error 1045, is reachable with errors.As through qorb's claim
// error, as through the bare driver, with one backend or two that fail
// alike, and that with one backend the message leads with the driver's
// text.
func TestMySQLAccessDeniedError(t *testing.T) {
	needLocal(t, "127.0.0.1:3306")
	admin := openQorb(t, localMySQL)
	user := fmt.Sprintf("qorbt_%x", rand.Uint32())
	for _, host := range []string{"localhost", "127.0.0.1", "%"} {
		if _, err := admin.ExecContext(t.Context(), fmt.Sprintf("CREATE USER '%s'@'%s' IDENTIFIED BY 'right-password'", user, host)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", user, host)) })
	}

	bare, err := sql.Open("mysql", user+":"+wrongPassword+"@tcp(127.0.0.1:3306)/test")
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	var bareErr *mysql.MySQLError
	if err := pingErr(t, bare); !errors.As(err, &bareErr) || bareErr.Number != 1045 {
		t.Fatalf("bare driver: %v, want MySQL error 1045", err)
	}

	for _, hosts := range []string{"127.0.0.1:3306", "127.0.0.1:3306," + url.PathEscape(mysqlSocket(t))} {
		t.Run(hosts, func(t *testing.T) {
			throughQorb(t, "mysql://"+user+":"+wrongPassword+"@"+hosts+"/test?"+failFast,
				!strings.Contains(hosts, ","), func(e *mysql.MySQLError) bool { return e.Number == 1045 })
		})
	}
}

// throughQorb checks that ping on dsn fails with an error in which
// errors.As finds a driver error of type E that ok accepts, and, for one
// backend, whose message leads with that error's text.
func throughQorb[E error](t *testing.T, dsn string, one bool, ok func(E) bool) {
	t.Helper()
	err := pingErr(t, openQorb(t, dsn))
	var e E
	if !errors.As(err, &e) || !ok(e) {
		t.Fatalf("through qorb: %v, want errors.As to find the driver's %T", err, e)
	}
	if one && !strings.HasPrefix(err.Error(), e.Error()) {
		t.Errorf("message %q does not lead with the driver's %q", err, e)
	}
}

// TestPostgresLoginRefusedError checks the same for PostgreSQL: a role
// that may not log in is refused with SQLSTATE 28000, and
// *pgconn.PgError is reachable through qorb's claim error. (The local
// server trusts every local login, so it never checks a password: the
// refusal is for the role instead, the same kind of error.)
func TestPostgresLoginRefusedError(t *testing.T) {
	needLocal(t, "127.0.0.1:5432")
	admin := openQorb(t, localPG)
	role := fmt.Sprintf("qorbt_%x", rand.Uint32())
	if _, err := admin.ExecContext(t.Context(), "CREATE ROLE "+role+" NOLOGIN PASSWORD 'right-password'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP ROLE IF EXISTS " + role) })

	bare, err := sql.Open("pgx", "postgres://"+role+":"+wrongPassword+"@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	var bareErr *pgconn.PgError
	if err := pingErr(t, bare); !errors.As(err, &bareErr) || bareErr.Code != "28000" {
		t.Fatalf("bare driver: %v, want SQLSTATE 28000", err)
	}

	for _, hosts := range []string{"127.0.0.1:5432", "127.0.0.1:5432," + url.PathEscape(pgSocketDir(t))} {
		t.Run(hosts, func(t *testing.T) {
			throughQorb(t, "postgres://"+role+":"+wrongPassword+"@"+hosts+"/test?sslmode=disable&"+failFast,
				!strings.Contains(hosts, ","), func(e *pgconn.PgError) bool { return e.Code == "28000" })
		})
	}
}

// TestPostgresWrongPasswordError checks that a wrong password, refused by
// servers that check passwords with SQLSTATE 28P01, is reachable with
// errors.As through qorb's claim error, with one backend or two, and that
// with one the message leads with the driver's text.
func TestPostgresWrongPasswordError(t *testing.T) {
	pgs := dbtest.StartPostgresWithPasswords(t, 2)
	bare, err := sql.Open("pgx", strings.Replace(pgs[0].DSN(), "password="+dbtest.Password, "password="+wrongPassword, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	var bareErr *pgconn.PgError
	if err := pingErr(t, bare); !errors.As(err, &bareErr) || bareErr.Code != "28P01" {
		t.Fatalf("bare driver: %v, want SQLSTATE 28P01", err)
	}
	// The right password works through qorb, so the refusal is the
	// password's.
	var one int
	queryOne(t, openQorb(t, fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", dbtest.User, dbtest.Password, pgs[0].Port(), dbtest.Database)), "SELECT 1", &one)

	for _, hosts := range []string{
		fmt.Sprintf("127.0.0.1:%d", pgs[0].Port()),
		fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", pgs[0].Port(), pgs[1].Port()),
	} {
		t.Run(hosts, func(t *testing.T) {
			throughQorb(t, "postgres://"+dbtest.User+":"+wrongPassword+"@"+hosts+"/"+dbtest.Database+"?sslmode=disable&"+failFast,
				!strings.Contains(hosts, ","), func(e *pgconn.PgError) bool { return e.Code == "28P01" })
		})
	}
}
