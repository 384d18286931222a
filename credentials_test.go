package qorb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

var _ CredentialsOpener = (*fakeOpener)(nil)

// ConnectAs opens a fake conn as Connect does and records cr in it.
func (o *fakeOpener) ConnectAs(ctx context.Context, b resolver.Backend, cr Credentials, opened func(net.Conn)) (driver.Conn, error) {
	dc, err := o.Connect(ctx, b)
	if err != nil {
		return nil, err
	}
	fc := o.find(dc)
	fc.mu.Lock()
	fc.as = cr
	fc.mu.Unlock()
	return dc, nil
}

// loggedInAs returns the credentials fc was opened with.
func (fc *fakeConn) loggedInAs() Credentials {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.as
}

// rotating is a CredentialsFunc whose password the test changes, counting
// its calls per backend.
type rotating struct {
	password atomic.Pointer[string]
	fail     atomic.Pointer[error]
	mu       sync.Mutex
	calls    map[resolver.Key]int
}

func newRotating(pw string) *rotating {
	r := &rotating{calls: map[resolver.Key]int{}}
	r.password.Store(&pw)
	return r
}

func (r *rotating) creds(ctx context.Context, b resolver.Backend) (Credentials, error) {
	r.mu.Lock()
	r.calls[b.Key()]++
	r.mu.Unlock()
	if err := r.fail.Load(); err != nil {
		return Credentials{}, *err
	}
	return Credentials{User: "iam_app", Password: *r.password.Load()}, nil
}

func (r *rotating) set(pw string)      { r.password.Store(&pw) }
func (r *rotating) failWith(err error) { r.fail.Store(&err) }

// startCredentialed starts a Connector over o and bs that asks r for the
// credentials of every connection.
func startCredentialed(t *testing.T, o *fakeOpener, r *rotating, pol pool.Policy, bs ...resolver.Backend) *Connector {
	t.Helper()
	res, err := resolver.NewStatic(bs...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConnector(Config{Opener: o, Resolver: res, Settings: Settings{Policy: pol}, Credentials: r.creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if n := o.open.Load(); n != 0 {
			t.Errorf("%d connections open after Close, want 0", n)
		}
	})
	return c
}

// TestCredentialsForEachConnection checks that the function is asked
// before every connection, once per connection, and that its password
// takes effect for the connections opened after it changed, while those
// open keep their session until their lifetime ends.
func TestCredentialsForEachConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(2)
		o := &fakeOpener{}
		r := newRotating("token-1")
		pol := onePerBackend(2)
		pol.MaxLifetime = time.Minute
		c := startCredentialed(t, o, r, pol, bs...)
		synctest.Wait()
		first := o.opened()
		if len(first) != 2 {
			t.Fatalf("%d connections opened, want 2", len(first))
		}
		for _, fc := range first {
			if got := fc.loggedInAs(); got.User != "iam_app" || got.Password != "token-1" {
				t.Errorf("%s logged in with %+v / %q, want iam_app / token-1", fc.name(), got, got.Password)
			}
		}

		r.set("token-2")
		time.Sleep(30 * time.Second) // within the lifetime: nothing reconnects
		synctest.Wait()
		if n := len(o.opened()); n != 2 {
			t.Errorf("%d connections opened before their lifetime ended, want 2", n)
		}
		time.Sleep(time.Minute) // past it
		synctest.Wait()
		all := o.opened()
		if len(all) != 4 {
			t.Fatalf("%d connections opened after the lifetime, want 4", len(all))
		}
		for _, fc := range all[2:] {
			if got := fc.loggedInAs(); got.Password != "token-2" {
				t.Errorf("%s, opened after the change, logged in with %q, want token-2", fc.name(), got.Password)
			}
		}
		r.mu.Lock()
		for _, b := range bs {
			if n := r.calls[b.Key()]; n != 2 {
				t.Errorf("credentials asked %d times for %s, want 2 (one per connection)", n, b.Key())
			}
		}
		r.mu.Unlock()
		if err := openDB(t, c).PingContext(t.Context()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

// TestCredentialsFailure checks that a failed CredentialsFunc fails the
// connection attempt with a CredentialsError that names the backend, is
// the backend's last error in Stats, and is what a claim that finds no
// connection says; the password the function returned before shows in
// none of them.
func TestCredentialsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const secret = "S3cr3t-T0ken"
		bs := backends(1)
		o := &fakeOpener{}
		r := newRotating(secret)
		pol := onePerBackend(1)
		pol.MaxLifetime = time.Minute
		pol.OfflineAfter = 1
		pol.ClaimTimeout = time.Second
		c := startCredentialed(t, o, r, pol, bs...)
		db := openDB(t, c)
		if err := db.PingContext(t.Context()); err != nil {
			t.Fatalf("Ping with working credentials: %v", err)
		}
		cause := errors.New("vault: permission denied")
		r.failWith(cause)
		time.Sleep(2 * time.Minute) // the connection's lifetime ends
		synctest.Wait()

		err := db.PingContext(t.Context())
		if err == nil {
			t.Fatal("Ping succeeded with failing credentials")
		}
		var ce *CredentialsError
		if !errors.Is(err, ErrCredentials) || !errors.Is(err, cause) || !errors.As(err, &ce) {
			t.Fatalf("Ping: %v, want a CredentialsError wrapping ErrCredentials and the cause", err)
		}
		if ce.Backend != bs[0].Key() {
			t.Errorf("CredentialsError.Backend = %s, want %s", ce.Backend, bs[0].Key())
		}
		want := "qorb: credentials for " + bs[0].Key().String() + ": vault: permission denied"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Ping: %v, want it to say %q", err, want)
		}
		st := backendStats(t, c, bs[0].Addr)
		if st.LastError != want {
			t.Errorf("LastError = %q, want %q", st.LastError, want)
		}
		for what, text := range map[string]string{
			"error": err.Error(), "error %+v": fmt.Sprintf("%+v", err), "stats": fmt.Sprintf("%+v", c.Stats()),
		} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret: %s", what, text)
			}
		}

		r.set("token-3")
		r.fail.Store(nil)
		deadline := time.Now().Add(time.Minute)
		for db.PingContext(t.Context()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("no connection within a minute of the credentials working again")
			}
			time.Sleep(time.Second)
		}
	})
}

// TestCredentialsNeedCredentialsOpener checks that NewConnector refuses
// Credentials with an Opener that cannot take them.
func TestCredentialsNeedCredentialsOpener(t *testing.T) {
	res, err := resolver.NewStatic(backends(1)...)
	if err != nil {
		t.Fatal(err)
	}
	plain := struct{ Opener }{&fakeOpener{}}
	r := newRotating("x")
	c, err := NewConnector(Config{Opener: plain, Resolver: res, Credentials: r.creds})
	if err == nil {
		c.Close()
		t.Fatal("NewConnector accepted Credentials with an Opener that is no CredentialsOpener")
	}
	if !strings.Contains(err.Error(), "CredentialsOpener") {
		t.Errorf("error %q does not say what the Opener lacks", err)
	}
}

// TestCredentialsFormat checks that no fmt verb prints the password.
func TestCredentialsFormat(t *testing.T) {
	cr := Credentials{User: "app", Password: "S3cr3t"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		got := fmt.Sprintf(verb, cr)
		if strings.Contains(got, "S3cr3t") || !strings.Contains(got, "app") {
			t.Errorf("Sprintf(%q) = %q, want the user without the password", verb, got)
		}
		if got := fmt.Sprintf(verb, struct{ C Credentials }{cr}); strings.Contains(got, "S3cr3t") {
			t.Errorf("Sprintf(%q) of a struct holding it = %q", verb, got)
		}
	}
}
