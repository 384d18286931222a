package pgdialect

import (
	"context"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/dialects/internal/loopback"
	"github.com/qorb-go/qorb/resolver"
)

// tlsAttempt is what one connection attempt of a configuration does.
type tlsAttempt struct {
	Host       string
	Port       uint16
	TLS        bool
	ServerName string
	Verify     bool // pgx's own host name verification (verify-full)
}

func attempts(t *testing.T, o *Opener, b resolver.Backend) []tlsAttempt {
	t.Helper()
	cfg, err := o.configFor(b)
	if err != nil {
		t.Fatalf("configFor(%v): %v", b, err)
	}
	if cfg.ValidateConnect != nil {
		t.Errorf("configFor(%v): ValidateConnect is set; pgx would apply target_session_attrs itself", b)
	}
	out := []tlsAttempt{{Host: cfg.Host, Port: cfg.Port}}
	if c := cfg.TLSConfig; c != nil {
		if c == o.cfg.TLSConfig {
			t.Errorf("configFor(%v): TLS configuration shared with the template", b)
		}
		out[0].TLS, out[0].ServerName, out[0].Verify = true, c.ServerName, !c.InsecureSkipVerify
	}
	for i, fb := range cfg.Fallbacks {
		a := tlsAttempt{Host: fb.Host, Port: fb.Port}
		if c := fb.TLSConfig; c != nil {
			if c == o.cfg.Fallbacks[i].TLSConfig {
				t.Errorf("configFor(%v): fallback TLS configuration shared with the template", b)
			}
			a.TLS, a.ServerName, a.Verify = true, c.ServerName, !c.InsecureSkipVerify
		}
		out = append(out, a)
	}
	return out
}

func TestConfigFor(t *testing.T) {
	ca := loopback.NewCA(t, "db.example")
	named := resolver.Backend{Host: "db.example", Addr: "10.1.2.3:6432"}
	tests := []struct {
		name   string
		params url.Values
		b      resolver.Backend
		want   []tlsAttempt
	}{
		{
			name:   "disable",
			params: url.Values{"sslmode": {"disable"}},
			b:      named,
			want:   []tlsAttempt{{Host: "10.1.2.3", Port: 6432}},
		},
		{
			name:   "prefer is TLS then plain",
			params: url.Values{},
			b:      named,
			want: []tlsAttempt{
				{Host: "10.1.2.3", Port: 6432, TLS: true, ServerName: "db.example"},
				{Host: "10.1.2.3", Port: 6432},
			},
		},
		{
			name:   "allow is plain then TLS",
			params: url.Values{"sslmode": {"allow"}},
			b:      named,
			want: []tlsAttempt{
				{Host: "10.1.2.3", Port: 6432},
				{Host: "10.1.2.3", Port: 6432, TLS: true, ServerName: "db.example"},
			},
		},
		{
			name:   "verify-full verifies the backend's name",
			params: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}},
			b:      named,
			want:   []tlsAttempt{{Host: "10.1.2.3", Port: 6432, TLS: true, ServerName: "db.example", Verify: true}},
		},
		{
			name:   "verify-full with sslsni=0 still verifies the name",
			params: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.File}, "sslsni": {"0"}},
			b:      named,
			want:   []tlsAttempt{{Host: "10.1.2.3", Port: 6432, TLS: true, ServerName: "db.example", Verify: true}},
		},
		{
			name:   "require with sslsni=0 sends no name",
			params: url.Values{"sslmode": {"require"}, "sslsni": {"0"}},
			b:      named,
			want:   []tlsAttempt{{Host: "10.1.2.3", Port: 6432, TLS: true}},
		},
		{
			name:   "IPv6 address",
			params: url.Values{"sslmode": {"require"}},
			b:      resolver.Backend{Host: "db.example", Addr: "[2001:db8::7]:5433"},
			want:   []tlsAttempt{{Host: "2001:db8::7", Port: 5433, TLS: true, ServerName: "db.example"}},
		},
		{
			name:   "no host name: the address's host",
			params: url.Values{"sslmode": {"require"}},
			b:      resolver.Backend{Addr: "[::1]:5432"},
			want:   []tlsAttempt{{Host: "::1", Port: 5432, TLS: true, ServerName: "::1"}},
		},
		{
			name:   "Unix socket directory: no TLS",
			params: url.Values{},
			b:      resolver.Backend{Host: "/var/run/postgresql", Addr: "/var/run/postgresql:5432"},
			want:   []tlsAttempt{{Host: "/var/run/postgresql", Port: 5432}},
		},
		{
			name:   "PGTARGETSESSIONATTRS is not pgx's to apply",
			params: url.Values{"sslmode": {"disable"}},
			b:      named,
			want:   []tlsAttempt{{Host: "10.1.2.3", Port: 6432}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PGTARGETSESSIONATTRS", "read-write")
			o, err := NewOpener(qorb.DriverConfig{User: "app", Database: "app", Params: tt.params})
			if err != nil {
				t.Fatalf("NewOpener: %v", err)
			}
			got := attempts(t, o, tt.b)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("attempts = %+v, want %+v", got, tt.want)
			}
			// The template keeps its placeholder for the next connection.
			if o.cfg.Host != placeholderHost {
				t.Errorf("template host = %q, want %q", o.cfg.Host, placeholderHost)
			}
			if c := o.cfg.TLSConfig; c != nil && c.ServerName != "" && c.ServerName != placeholderHost {
				t.Errorf("template ServerName = %q, want %q", c.ServerName, placeholderHost)
			}
		})
	}
}

func TestConfigForBadAddress(t *testing.T) {
	o, err := NewOpener(qorb.DriverConfig{User: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"", "db.example", "db.example:0", "db.example:99999", ":5432", "[::1:5432"} {
		if _, err := o.configFor(resolver.Backend{Addr: addr}); err == nil {
			t.Errorf("configFor(Addr %q) succeeded, want an error", addr)
		}
	}
}

func TestNewOpenerUserDatabasePassword(t *testing.T) {
	o, err := NewOpener(qorb.DriverConfig{
		User:     "o'brien",
		Password: `pa ss'\word`,
		Database: "my db",
		Params:   url.Values{"application_name": {"it's qorb"}, "sslmode": {"disable"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.User != "o'brien" || c.Password != `pa ss'\word` || c.Database != "my db" {
		t.Errorf("user, password, database = %q, %q, %q", c.User, c.Password, c.Database)
	}
	if got := c.RuntimeParams["application_name"]; got != "it's qorb" {
		t.Errorf("application_name = %q, want %q", got, "it's qorb")
	}

	// A password parameter overrides the user information's.
	o, err = NewOpener(qorb.DriverConfig{User: "u", Password: "one", Params: url.Values{"password": {"two"}}})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Password != "two" {
		t.Errorf("password = %q, want the parameter's", o.cfg.Password)
	}
	if _, ok := o.cfg.RuntimeParams["password"]; ok {
		t.Error("password became a run-time parameter")
	}
}

func TestNewOpenerErrors(t *testing.T) {
	const password = `Pw-s3cret'\x`
	const sslpassword = "Key-s3cret"
	tests := []struct {
		name   string
		params url.Values
		want   string // in the error
	}{
		{"bad sslmode", url.Values{"sslmode": {"sometimes"}}, "sslmode is invalid"},
		{"bad connect_timeout", url.Values{"connect_timeout": {"soon"}}, "connect_timeout"},
		{"target_session_attrs", url.Values{"target_session_attrs": {"read-write"}}, "target_session_attrs"},
		{"bad statement_cache_capacity", url.Values{"statement_cache_capacity": {"lots"}}, "statement_cache_capacity"},
		{"bad channel_binding", url.Values{"channel_binding": {"maybe"}}, "channel_binding"},
		{"missing CA file", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {"/nonexistent/ca.pem"}}, "CA file"},
		{"sslcert without sslkey", url.Values{"sslcert": {"/nonexistent/c.pem"}, "sslpassword": {sslpassword}}, "sslkey"},
		{"host", url.Values{"host": {"db2"}}, "host"},
		{"port", url.Values{"port": {"5433"}}, "port"},
		{"hostaddr", url.Values{"hostaddr": {"10.0.0.1"}}, "hostaddr"},
		{"pool parameter", url.Values{"pool_max_conns": {"4"}}, "pool_max_conns"},
		{"dns_server", url.Values{"dns_server": {"10.0.0.53"}}, "dns_server"},
		{"replica_srv", url.Values{"replica_srv": {"replicas.example"}}, "replica_srv"},
		{"bad keyword", url.Values{"a b": {"c"}}, "keyword"},
		{"password parameter", url.Values{"password": {password}, "sslmode": {"bogus"}}, "sslmode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewOpener(qorb.DriverConfig{User: "app", Password: password, Database: "app", Params: tt.params})
			if err == nil {
				t.Fatal("NewOpener succeeded, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "pgdialect: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q: want it to start with pgdialect: and mention %q", msg, tt.want)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("error shows a secret: %q", msg)
			}
			if strings.Contains(msg, placeholderHost) {
				t.Errorf("error shows the placeholder host: %q", msg)
			}
		})
	}
}

func TestDialect(t *testing.T) {
	var d Dialect
	if d.Name() != "postgres" || d.Service() != "_postgresql._tcp" || d.DefaultPort() != 5432 {
		t.Errorf("Name, Service, DefaultPort = %q, %q, %d", d.Name(), d.Service(), d.DefaultPort())
	}
	o, err := d.Open(qorb.DriverConfig{Params: url.Values{"sslmode": {"nope"}}})
	if err == nil || o != nil {
		t.Errorf("Open(bad sslmode) = %v, %v; want a nil Opener and an error", o, err)
	}
}

func TestForeignConn(t *testing.T) {
	o, err := NewOpener(qorb.DriverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Recycle(t.Context(), nil, false); !errors.Is(err, ErrForeignConn) {
		t.Errorf("Recycle(nil) = %v, want ErrForeignConn", err)
	}
	if _, err := o.Role(t.Context(), nil); !errors.Is(err, ErrForeignConn) {
		t.Errorf("Role(nil) = %v, want ErrForeignConn", err)
	}
	if err := o.Ping(t.Context(), nil); !errors.Is(err, ErrForeignConn) {
		t.Errorf("Ping(nil) = %v, want ErrForeignConn", err)
	}
}

func TestRoundTripContext(t *testing.T) {
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := roundTrip(done); !errors.Is(err, context.Canceled) {
		t.Errorf("roundTrip(cancelled) = %v, want context.Canceled", err)
	}

	parent, cancelParent := context.WithTimeout(t.Context(), time.Hour)
	ctx, cancel, err := roundTrip(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	cancelParent()
	if ctx.Err() != nil {
		t.Errorf("cancelling the parent ended the round trip's context")
	}
	if d1, _ := parent.Deadline(); func() bool { d2, ok := ctx.Deadline(); return !ok || !d2.Equal(d1) }() {
		t.Errorf("the round trip's context lost the parent's deadline")
	}

	plain, cancelPlain := context.WithCancel(t.Context())
	defer cancelPlain()
	if ctx, _, _ := roundTrip(plain); ctx != plain {
		t.Errorf("a context without a deadline must be kept as it is: cancelling it is the only way to end the round trip")
	}
}
