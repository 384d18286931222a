package pgdialect

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/resolver"
)

func TestSplitKeywords(t *testing.T) {
	tests := []struct {
		in   string
		want []pair
	}{
		{"", nil},
		{"   ", nil},
		{"host=a", []pair{{"host", "a", "host=a"}}},
		{" host = a  port=5432 ", []pair{{"host", "a", "host = a"}, {"port", "5432", "port=5432"}}},
		{`password='it\'s a \\ test' user=u`, []pair{{"password", `it's a \ test`, `password='it\'s a \\ test'`}, {"user", "u", "user=u"}}},
		{`a=b\ c d=`, []pair{{"a", "b c", `a=b\ c`}, {"d", "", "d="}}},
		{"a='' b=x", []pair{{"a", "", "a=''"}, {"b", "x", "b=x"}}},
		{"a='x'b=y", []pair{{"a", "x", "a='x'"}, {"b", "y", "b=y"}}},
		{`a=x\`, []pair{{"a", "x", `a=x\`}}},
	}
	for _, tt := range tests {
		got, err := splitKeywords(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitKeywords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSplitKeywordsErrors(t *testing.T) {
	for _, in := range []string{
		"host",
		"=a",
		"host a=b",
		"password='Secr3t",
		`password='Secr3t\`,
		"password=my Secr3t dbname=x",
		"password='Secr3t''s' x=1", // '' is no escape: the quote closes early
	} {
		_, err := splitKeywords(in)
		if err == nil {
			t.Errorf("splitKeywords(%q) succeeded, want an error", in)
			continue
		}
		if strings.Contains(err.Error(), "Secr3t") {
			t.Errorf("splitKeywords(%q): error shows the password: %v", in, err)
		}
	}
}

func TestParseNative(t *testing.T) {
	t.Setenv("PGPASSFILE", "/nonexistent")
	tests := []struct {
		name     string
		dsn      string
		backends []string // Backend.String
		role     qorb.Role
		reset    bool
		maxConns int
		params   map[string]string // run-time parameters pgx will send
	}{
		{
			name:     "keyword, one host",
			dsn:      "host=10.0.0.1 port=5433 user=app dbname=app sslmode=disable application_name=svc pool_max_conns=7",
			backends: []string{"10.0.0.1:5433"},
			maxConns: 7,
			params:   map[string]string{"application_name": "svc"},
		},
		{
			name:     "keyword, several hosts and ports",
			dsn:      "host=db1.example,db2.example,10.0.0.3 port=5432,5433,5434 user=app target_session_attrs=read-write pool_reset_session=true",
			backends: []string{"db1.example:5432", "db2.example:5433", "10.0.0.3:5434"},
			role:     qorb.RolePrimary,
			reset:    true,
			params:   map[string]string{},
		},
		{
			name:     "keyword, quoted values",
			dsn:      `host = 10.0.0.1 user = 'app' options = '-c search_path=a,b' target_session_attrs = 'prefer-standby'`,
			backends: []string{"10.0.0.1:5432"},
			role:     qorb.RolePreferReplica,
			params:   map[string]string{"options": "-c search_path=a,b"},
		},
		{
			name:     "URL, hosts with and without ports",
			dsn:      "postgres://app:pw@db1.example:6432,db2.example/app?sslmode=require&pool_max_conns=3&target_session_attrs=standby&search_path=s1",
			backends: []string{"db1.example:6432", "db2.example:5432"},
			role:     qorb.RoleReplica,
			maxConns: 3,
			params:   map[string]string{"search_path": "s1"},
		},
		{
			name:     "URL, IPv6",
			dsn:      "postgresql://app@[::1]:5433,[2001:db8::2]/app?sslmode=disable",
			backends: []string{"[::1]:5433", "[2001:db8::2]:5432"},
			params:   map[string]string{},
		},
		{
			name:     "URL, no query",
			dsn:      "postgres://app@10.0.0.9/app",
			backends: []string{"10.0.0.9:5432"},
			params:   map[string]string{},
		},
		{
			name:     "URL, '?' in the password",
			dsn:      "postgres://app:p?ss@10.0.0.9/app?pool_max_conns=2",
			backends: []string{"10.0.0.9:5432"},
			maxConns: 2,
			params:   map[string]string{},
		},
		{
			name:     "the same host twice is one backend",
			dsn:      "host=10.0.0.1,10.0.0.1 sslmode=prefer",
			backends: []string{"10.0.0.1:5432"},
			params:   map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := parseNative(tt.dsn)
			if err != nil {
				t.Fatalf("parseNative: %v", err)
			}
			var got []string
			for _, b := range n.backends {
				got = append(got, b.String())
				if b.Weight != 1 {
					t.Errorf("backend %v has weight %d", b, b.Weight)
				}
			}
			if !reflect.DeepEqual(got, tt.backends) {
				t.Errorf("backends = %q, want %q", got, tt.backends)
			}
			if n.settings.DefaultRole != tt.role {
				t.Errorf("default role = %v, want %v", n.settings.DefaultRole, tt.role)
			}
			if n.settings.Reset != tt.reset {
				t.Errorf("reset = %v, want %v", n.settings.Reset, tt.reset)
			}
			if n.settings.Policy.MaxSlots != tt.maxConns {
				t.Errorf("MaxSlots = %d, want %d", n.settings.Policy.MaxSlots, tt.maxConns)
			}
			if rp := n.opener.cfg.RuntimeParams; !reflect.DeepEqual(rp, tt.params) {
				t.Errorf("run-time parameters = %q, want %q", rp, tt.params)
			}
			if n.opener.cfg.ValidateConnect != nil {
				t.Error("pgx would apply target_session_attrs")
			}
			if n.opener.cfg.Host != placeholderHost {
				t.Errorf("template host = %q", n.opener.cfg.Host)
			}
		})
	}
}

func TestParseNativePassword(t *testing.T) {
	for _, dsn := range []string{
		"host=10.0.0.1 user=app password=s3cret",
		"postgres://app:s3cret@10.0.0.1/app",
		"postgres://app:s3%63ret@10.0.0.1/app",
		"postgres://app@10.0.0.1/app?password=s3cret",
	} {
		n, err := parseNative(dsn)
		if err != nil {
			t.Errorf("parseNative(%q): %v", dsn, err)
			continue
		}
		if n.opener.cfg.Password != "s3cret" {
			t.Errorf("parseNative(%q): password %q, want s3cret", dsn, n.opener.cfg.Password)
		}
	}
}

func TestParseNativeErrors(t *testing.T) {
	tests := []struct {
		dsn  string
		want string
	}{
		{"host=10.0.0.1 password=Secr3t sslmode=sometimes", "sslmode is invalid"},
		{"postgres://app:Secr3t@10.0.0.1/app?sslmode=sometimes", "sslmode is invalid"},
		{"postgres://app:Secr3t@10.0.0.1:99999/app", "invalid port"},
		{"host=10.0.0.1,10.0.0.2 port=1,2,3 password=Secr3t", "port numbers"},
		{"host=10.0.0.1 password=Secr3t pool_max_conns=lots", "pool_max_conns"},
		{"host=10.0.0.1 password=Secr3t pool_nonsense=1", "pool_nonsense"},
		{"host=10.0.0.1 password=Secr3t target_session_attrs=writable", "target_session_attrs"},
		{"host=10.0.0.1 password=my Secr3t", "keyword"},
		{"host=10.0.0.1 password='Secr3t", "quote"},
		{"postgres://app:Secr3t@10.0.0.1/app?sslpassword=Secr3tToo&sslcert=/nonexistent", "sslkey"},
		{"postgres://app:Secr3t@[::1/app", "IPv6"},
		{"postgres://app:Secr3t@10.0.0.1/app?a=1&&b=2", "separator"},
	}
	for _, tt := range tests {
		_, err := parseNative(tt.dsn)
		if err == nil {
			t.Errorf("parseNative(%q) succeeded, want an error", tt.dsn)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, qorb.ErrBadDSN) {
			t.Errorf("parseNative(%q) = %q, want it to wrap qorb.ErrBadDSN", tt.dsn, msg)
		}
		if !strings.Contains(msg, tt.want) {
			t.Errorf("parseNative(%q) = %q, want it to mention %q", tt.dsn, msg, tt.want)
		}
		if strings.Contains(msg, "Secr3t") || strings.Contains(msg, placeholderHost) {
			t.Errorf("parseNative(%q) = %q: shows a secret or the placeholder", tt.dsn, msg)
		}
	}
}

func TestParseNativeDefaultHost(t *testing.T) {
	t.Setenv("PGHOST", "10.9.8.7")
	t.Setenv("PGPORT", "6543")
	n, err := parseNative("user=app sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	want := []resolver.Backend{{Host: "10.9.8.7", Addr: "10.9.8.7:6543", Weight: 1}}
	if !reflect.DeepEqual(n.backends, want) {
		t.Errorf("backends = %v, want %v", n.backends, want)
	}
}

func TestNewConnectorErrors(t *testing.T) {
	if c, err := NewConnector("host=10.0.0.1 pool_max_conns=x"); err == nil || c != nil {
		t.Errorf("NewConnector(bad) = %v, %v; want an error", c, err)
	}
}

// TestNewConnectorSRVOnly checks that NewConnector refuses the parameters
// only an SRV name can use, as a static qorb DSN does and with its message,
// instead of ignoring them.
func TestNewConnectorSRVOnly(t *testing.T) {
	for _, param := range []string{"dns_server=10.0.0.53", "replica_srv=replicas.example"} {
		_, static := qorb.OpenConnector("postgres://app@10.0.0.1/app?" + param)
		for _, dsn := range []string{"host=10.0.0.1 user=app password=Secr3t " + param, "postgres://app:Secr3t@10.0.0.1/app?" + param} {
			c, err := NewConnector(dsn)
			if err == nil {
				c.Close()
				t.Errorf("NewConnector(%q) succeeded, want an error", dsn)
				continue
			}
			if !errors.Is(err, qorb.ErrBadDSN) || static == nil || !strings.HasSuffix(static.Error(), ": "+err.Error()) {
				t.Errorf("NewConnector(%q) = %v; want the ErrBadDSN message that ends the static qorb DSN's %v", dsn, err, static)
			}
			if strings.Contains(err.Error(), "Secr3t") {
				t.Errorf("NewConnector(%q) = %v: shows the password", dsn, err)
			}
		}
	}
}

// FuzzSplitKeywords checks splitKeywords against pgx's own parser: both
// accept the same keyword/value strings, and what splitKeywords splits it
// puts back together to the same parameters.
func FuzzSplitKeywords(f *testing.F) {
	for _, s := range []string{
		"", "host=a", " host = a  port=5432 ", `password='it\'s a \\ test' user=u`, `a=b\ c d=`,
		"a='' b=x", "a='x'b=y", `a=x\`, "host", "=a", "host a=b", "password='open", "a b=c",
		"host=a,b port=1,2 sslmode=disable pool_max_conns=3 target_session_attrs=primary",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.ContainsRune(s, 0) {
			return
		}
		pairs, err := splitKeywords(s)
		_, perr := pgxSyntax(s)
		if (err == nil) != (perr == nil) {
			t.Fatalf("splitKeywords(%q) = %v, pgx = %v", s, err, perr)
		}
		if err != nil {
			return
		}
		// Put together again, with more after it, it says the same.
		more := append(pairs, pair{key: "host", value: placeholderHost})
		again, err := splitKeywords(join(false, "", more))
		if err != nil || len(again) != len(more) {
			t.Fatalf("splitKeywords(join(%q)) = %q, %v", more, again, err)
		}
		for i := range more {
			if again[i].key != more[i].key || again[i].value != more[i].value {
				t.Fatalf("splitKeywords(join(%q)) = %q", more, again)
			}
		}
	})
}

// pgxSyntax parses s with pgx and returns only a syntax error.
func pgxSyntax(s string) (bool, error) {
	_, err := pgconn.ParseConfig(s)
	if err != nil && strings.Contains(err.Error(), "failed to parse as keyword/value") {
		return false, err
	}
	return true, nil
}

// FuzzParseNative: any string either parses or fails with an error that
// wraps qorb.ErrBadDSN; nothing panics.
func FuzzParseNative(f *testing.F) {
	for _, s := range []string{
		"host=10.0.0.1 user=app pool_max_conns=3",
		"postgres://app:pw@h1:5432,[::1]/db?sslmode=disable&pool_max_conns=2&target_session_attrs=read-write",
		"postgres://a:b@[::1/x", "postgresql://h?a=1&&b", "host=a,b port=1,2,3", "sslmode=bogus",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseNative(s)
		if err != nil {
			if !errors.Is(err, qorb.ErrBadDSN) {
				t.Fatalf("parseNative(%q) = %v, want it to wrap ErrBadDSN", s, err)
			}
			return
		}
		if len(n.backends) == 0 || n.opener.cfg.Host != placeholderHost {
			t.Fatalf("parseNative(%q): backends %v, template host %q", s, n.backends, n.opener.cfg.Host)
		}
		if _, err := resolver.NewStatic(n.backends...); err != nil {
			t.Fatalf("parseNative(%q): backends %v: %v", s, n.backends, err)
		}
	})
}
