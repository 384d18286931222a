// Command rotate shows a credentials provider: the pool asks it for the
// password of every new connection, so a password changed on the server
// and in the store takes effect without a restart, and
// Connector.Recycle replaces the connections that logged in with the old
// one, a few at a time, while the program keeps running queries.
//
//	go run ./examples/rotate [admin DSN]
//
// The admin DSN is a MariaDB or MySQL account that may create users; the
// default is the local server's root. The example makes a user of its
// own, qorb_rotate_ and a random suffix, changes its password once, and
// drops it at the end.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/mysqldialect"
	"github.com/qorb-go/qorb/resolver"
)

func main() {
	admin := "mysql://root@127.0.0.1:3306/test"
	if len(os.Args) > 1 {
		admin = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, admin, "127.0.0.1:3306", os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// secretStore stands for a secret manager, or for an IAM token that
// expires: the provider returns what was stored last. A real provider
// caches what it fetched until shortly before it expires.
type secretStore struct {
	mu       sync.Mutex
	user     string
	password string
}

func (s *secretStore) put(pw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.password = pw
}

// credentials is the qorb.CredentialsFunc: the pool calls it before each
// new connection.
func (s *secretStore) credentials(ctx context.Context, b resolver.Backend) (qorb.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.password == "" {
		return qorb.Credentials{}, errors.New("secret store: no password stored")
	}
	return qorb.Credentials{User: s.user, Password: s.password}, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// run makes a user through the admin DSN, connects as it to addr with the
// password from a store, changes the password, recycles the pool and
// drops the user.
func run(ctx context.Context, adminDSN, addr string, out io.Writer) error {
	admin, err := sql.Open("qorb", adminDSN)
	if err != nil {
		return err
	}
	defer admin.Close()
	user := "qorb_rotate_" + randomHex(4)
	hosts := []string{"localhost", "127.0.0.1", "%"}
	each := func(format string, args ...any) error {
		for _, h := range hosts {
			q := fmt.Sprintf(format, append([]any{user, h}, args...)...)
			if _, err := admin.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	store := &secretStore{user: user}
	store.put(randomHex(12))
	if err := each("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'", store.password); err != nil {
		return err
	}
	defer each("DROP USER IF EXISTS '%s'@'%s'")
	if err := each("GRANT SELECT ON test.* TO '%s'@'%s'"); err != nil {
		return err
	}

	// The DSN has no password: the provider gives it.
	cfg, err := qorb.ParseDSN("mysql://" + user + "@" + addr + "/test?pool_max_conns=4&pool_connect_rate=2&pool_connect_burst=1")
	if err != nil {
		return err
	}
	cfg.Credentials = store.credentials
	c, err := qorb.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var who string
	if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&who); err != nil {
		return err
	}
	fmt.Fprintf(out, "connected as %s with the first password\n", who)

	// Rotate: a new password in the store, then on the server. New
	// connections log in with it at once; the old ones are replaced, a
	// few at a time, by Recycle.
	next := randomHex(12)
	store.put(next)
	if err := each("ALTER USER '%s'@'%s' IDENTIFIED BY '%s'", next); err != nil {
		return err
	}
	n := c.Recycle()
	fmt.Fprintf(out, "password changed; recycling the %d connections open\n", n)
	for outdated(c) > 0 {
		// The program keeps working meanwhile.
		if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&who); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d connections still use the old password: %w", outdated(c), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintln(out, "every connection now logged in with the new password")
	return nil
}

// outdated returns how many of c's connections Recycle has yet to replace.
func outdated(c *qorb.Connector) int {
	n := 0
	for _, b := range c.Stats().Backends {
		n += b.Outdated
	}
	return n
}
