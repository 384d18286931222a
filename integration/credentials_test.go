package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/internal/dbtest"
	"github.com/qorb-go/qorb/resolver"
)

// credServer is a server whose passwords a credentials test changes: an
// admin connection, and the statements that make a login and change its
// password.
type credServer struct {
	// dsn is a qorb DSN for the login, with a password the server refuses
	// (dsnPassword), so that only the provider's can work.
	dsn   string
	admin *sql.DB
	// create makes the login with password pw; alter changes it.
	create, alter func(t *testing.T, pw string)
	// sessions returns the login's sessions on the server, and how many
	// of them began after mark; mark returns a point in the server's
	// history (a time on PostgreSQL, a connection id on MariaDB).
	mark     func(t *testing.T) string
	sessions func(t *testing.T, since string) (all, after int)
}

// dsnPassword is the password the credentials tests' DSNs carry: the
// server refuses it.
const dsnPassword = "not-the-password"

// credLoad is what a credentials test runs against a server: a load of
// concurrent queries while the password of its login changes twice.
const (
	credWorkers = 16
	credPolicy  = "pool_max_conns=8&pool_connect_rate=0.5&pool_connect_burst=1&pool_claim_timeout=20s&pool_backoff_min=20ms&pool_backoff_max=200ms"
)

// postgresCreds starts a PostgreSQL server that checks passwords and
// returns it as a credServer for a new login role.
func postgresCreds(t *testing.T) credServer {
	pg := dbtest.StartPostgresWithPasswords(t, 1)[0]
	admin := openQorb(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.Port(), dbtest.Database))
	role := fmt.Sprintf("qorbc_%x", rand.Uint32())
	exec := func(t *testing.T, q string) {
		t.Helper()
		if _, err := admin.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return credServer{
		dsn:    fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable&%s", role, dsnPassword, pg.Port(), dbtest.Database, credPolicy),
		admin:  admin,
		create: func(t *testing.T, pw string) { exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, pw)) },
		alter:  func(t *testing.T, pw string) { exec(t, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, pw)) },
		mark: func(t *testing.T) string {
			var at string
			queryOne(t, admin, "SELECT clock_timestamp()::text", &at)
			return at
		},
		sessions: func(t *testing.T, since string) (all, after int) {
			t.Helper()
			q := fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE backend_start > '%s'::timestamptz)
				FROM pg_stat_activity WHERE usename = '%s'`, since, role)
			if err := admin.QueryRowContext(t.Context(), q).Scan(&all, &after); err != nil {
				t.Fatal(err)
			}
			return all, after
		},
	}
}

// mariadbCreds returns the local MariaDB server as a credServer for a new
// user.
func mariadbCreds(t *testing.T) credServer {
	needLocal(t, "127.0.0.1:3306")
	admin := openQorb(t, localMySQL)
	user := fmt.Sprintf("qorbc_%x", rand.Uint32())
	hosts := []string{"localhost", "127.0.0.1", "%"}
	// each runs the statement stmt(h) writes for each host h of the user.
	each := func(t *testing.T, stmt func(h string) string) {
		t.Helper()
		for _, h := range hosts {
			if _, err := admin.ExecContext(t.Context(), stmt(h)); err != nil {
				t.Fatalf("%s: %v", stmt(h), err)
			}
		}
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", user, h))
		}
	})
	return credServer{
		dsn:   fmt.Sprintf("mysql://%s:%s@127.0.0.1:3306/test?%s", user, dsnPassword, credPolicy),
		admin: admin,
		create: func(t *testing.T, pw string) {
			each(t, func(h string) string { return fmt.Sprintf("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'", user, h, pw) })
			each(t, func(h string) string { return fmt.Sprintf("GRANT SELECT ON test.* TO '%s'@'%s'", user, h) })
		},
		alter: func(t *testing.T, pw string) {
			each(t, func(h string) string { return fmt.Sprintf("ALTER USER '%s'@'%s' IDENTIFIED BY '%s'", user, h, pw) })
		},
		mark: func(t *testing.T) string {
			// Connection ids grow: a session with a greater one began later.
			var id string
			queryOne(t, admin, "SELECT CAST(MAX(ID) AS CHAR) FROM information_schema.PROCESSLIST", &id)
			return id
		},
		sessions: func(t *testing.T, since string) (all, after int) {
			t.Helper()
			q := fmt.Sprintf("SELECT COUNT(*), COALESCE(SUM(ID > %s), 0) FROM information_schema.PROCESSLIST WHERE USER = '%s'", since, user)
			if err := admin.QueryRowContext(t.Context(), q).Scan(&all, &after); err != nil {
				t.Fatal(err)
			}
			return all, after
		},
	}
}

// secretStore stands for a secret manager: a CredentialsFunc that returns
// the password stored last, or fails.
type secretStore struct {
	user     string
	password atomic.Pointer[string]
	fail     atomic.Pointer[error]
	calls    atomic.Int64
}

func (s *secretStore) put(pw string) { s.password.Store(&pw) }

func (s *secretStore) creds(ctx context.Context, b resolver.Backend) (qorb.Credentials, error) {
	s.calls.Add(1)
	if err := s.fail.Load(); err != nil {
		return qorb.Credentials{}, *err
	}
	return qorb.Credentials{User: s.user, Password: *s.password.Load()}, nil
}

// credLoadRun runs SELECT 1 from credWorkers goroutines until stopped,
// counting the queries and the errors.
type credLoadRun struct {
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	ok     atomic.Int64
	mu     sync.Mutex
	errs   []error
	failed atomic.Int64
}

func startCredLoad(db *sql.DB) *credLoadRun {
	l := &credLoadRun{stop: make(chan struct{})}
	for range credWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var one int
				err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
				cancel()
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err)
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// end stops the load and waits for it.
func (l *credLoadRun) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// TestCredentialsRotation changes the password of a real login
// under a load of 16 goroutines, on PostgreSQL (a server that checks
// passwords with scram-sha-256) and on MariaDB. The DSN's password is
// wrong: every connection logs in with what the provider returns. After
// the change the sessions open are kept, until Connector.Recycle replaces
// them with sessions that logged in with the new password (the server
// accepted them after the old one stopped working); no query fails. Then the provider fails: the
// failure shows, with the backend's name and without the password, in
// Stats and in the error of a query that finds no connection.
func TestCredentialsRotation(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(t *testing.T) credServer
	}{
		{"postgres", postgresCreds},
		{"mariadb", mariadbCreds},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := tt.start(t)
			first := fmt.Sprintf("Pw1-%x", rand.Uint64())
			srv.create(t, first)
			user := strings.SplitN(strings.SplitN(srv.dsn, "://", 2)[1], ":", 2)[0]
			store := &secretStore{user: user}
			store.put(first)

			cfg, err := qorb.ParseDSN(srv.dsn)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Credentials = store.creds
			c, err := qorb.NewConnector(cfg)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()

			load := startCredLoad(db)
			defer load.end()
			waitFor(t, 30*time.Second, "the load running", func() bool {
				if load.failed.Load() > 0 {
					t.Fatalf("queries fail: %v", load.errs)
				}
				return load.ok.Load() > 100
			})
			// and the pool grown to pool_max_conns, so that no session
			// opens after the change but those Recycle opens.
			waitFor(t, 30*time.Second, "the pool at pool_max_conns", func() bool {
				open := 0
				for _, b := range c.Stats().Backends {
					open += b.Idle + b.Claimed + b.Checking + b.Recycling
				}
				return open == 8
			})

			// The secret changes in the store, then on the server, as a
			// rotation does. The sessions open keep going.
			second := fmt.Sprintf("Pw2-%x", rand.Uint64())
			store.put(second)
			srv.alter(t, second)
			mark := srv.mark(t)
			before := load.ok.Load()
			waitFor(t, 30*time.Second, "queries after the change", func() bool { return load.ok.Load() > before+100 })
			if all, after := srv.sessions(t, mark); all == 0 || after != 0 {
				t.Errorf("after the change, before Recycle: %d sessions, %d new; want the old ones kept", all, after)
			}

			// Recycle replaces them, at pool_connect_rate, with sessions
			// that log in with the new password.
			start, calls := time.Now(), store.calls.Load()
			marked := c.Recycle()
			waitFor(t, 60*time.Second, "every session logged in after the change", func() bool {
				all, after := srv.sessions(t, mark)
				return all > 0 && all == after && outdated(c) == 0
			})
			t.Logf("Recycle: %d connections replaced in %v, %d provider calls; %d queries in all",
				marked, time.Since(start).Round(time.Millisecond), store.calls.Load()-calls, load.ok.Load())
			if n := load.failed.Load(); n != 0 {
				t.Errorf("%d queries failed across the change; first: %v", n, load.errs)
			}
			// the old password no longer works, so the sessions used the new.
			if err := loginWith(srv, user, first); err == nil {
				t.Errorf("login with the old password succeeded")
			}
			if err := loginWith(srv, user, second); err != nil {
				t.Errorf("login with the new password: %v", err)
			}

			// The provider fails. Recycle's first replacement fails, and
			// shows in Stats; the connections it marked stay in service,
			// so queries keep working. A pool that must open a connection
			// fails its claims with the provider's error.
			cause := errors.New("secret store: access denied")
			store.fail.Store(&cause)
			c.Recycle()
			waitFor(t, 60*time.Second, "the CredentialsError in Stats", func() bool {
				for _, b := range c.Stats().Backends {
					if strings.Contains(b.LastError, cause.Error()) {
						return true
					}
				}
				return false
			})
			var one int
			if err := db.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil {
				t.Errorf("query on the connections kept while the provider fails: %v", err)
			}
			load.end()
			if n := load.failed.Load(); n != 0 {
				t.Errorf("%d queries failed while the provider failed; first: %v", n, load.errs)
			}
			fresh, err := qorb.NewConnector(cfg)
			if err != nil {
				t.Fatal(err)
			}
			freshDB := sql.OpenDB(fresh)
			defer freshDB.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			qerr := freshDB.QueryRowContext(ctx, "SELECT 1").Scan(&one)
			cancel()
			var ce *qorb.CredentialsError
			if !errors.As(qerr, &ce) || !errors.Is(qerr, cause) || ce.Backend.Addr == "" {
				t.Errorf("query error %v: want a CredentialsError naming the backend and wrapping the cause", qerr)
			}
			st := c.Stats()
			last := ""
			for _, b := range st.Backends {
				last += b.LastError
			}
			if !strings.Contains(last, "credentials for "+ce.Backend.String()) || !strings.Contains(last, cause.Error()) {
				t.Errorf("Stats: last error %q, want the CredentialsError", last)
			}
			for what, text := range map[string]string{
				"query error": qerr.Error(), "query error %+v": fmt.Sprintf("%+v", qerr), "stats": fmt.Sprintf("%+v", st),
			} {
				for _, secret := range []string{first, second} {
					if strings.Contains(text, secret) {
						t.Errorf("%s shows a password: %s", what, text)
					}
				}
			}
		})
	}
}

// loginWith opens one connection as user with password pw to the server
// of srv, without qorb's pool, and returns its error.
func loginWith(srv credServer, user, pw string) error {
	dsn := strings.Replace(srv.dsn, user+":"+dsnPassword+"@", user+":"+pw+"@", 1)
	cfg, err := qorb.ParseDSN(strings.Replace(dsn, credPolicy, "pool_max_conns=1&pool_offline_after=1&pool_claim_timeout=5s", 1))
	if err != nil {
		return err
	}
	c, err := qorb.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// outdated returns how many of c's connections Recycle has yet to replace.
func outdated(c *qorb.Connector) int {
	n := 0
	for _, b := range c.Stats().Backends {
		n += b.Outdated
	}
	return n
}
