package mysqldialect

import (
	"crypto/tls"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/resolver"
)

func init() {
	// Registered once per test binary: the driver's registry is global.
	mysql.RegisterTLSConfig("qorb-pinned", &tls.Config{ServerName: "pinned.example"})
	mysql.RegisterTLSConfig("qorb-unnamed", &tls.Config{})
}

// target is where a configuration connects, and the TLS name it uses.
type target struct {
	Addr       string
	TLS        bool
	ServerName string
	Verify     bool
}

func targetOf(t *testing.T, o *Opener, b resolver.Backend) target {
	t.Helper()
	cfg, err := o.configFor(b)
	if err != nil {
		t.Fatalf("configFor(%v): %v", b, err)
	}
	got := target{Addr: cfg.Addr}
	if cfg.TLS != nil {
		if cfg.TLS == o.cfg.TLS {
			t.Errorf("configFor(%v): TLS configuration shared with the template", b)
		}
		got.TLS, got.ServerName, got.Verify = true, cfg.TLS.ServerName, !cfg.TLS.InsecureSkipVerify
	}
	return got
}

func TestConfigFor(t *testing.T) {
	named := resolver.Backend{Host: "db.example", Addr: "10.1.2.3:3307"}
	tests := []struct {
		name string
		tls  string
		b    resolver.Backend
		want target
	}{
		{"no TLS", "", named, target{Addr: "10.1.2.3:3307"}},
		{"tls=true verifies the backend's name", "true", named, target{"10.1.2.3:3307", true, "db.example", true}},
		{"skip-verify sends the name", "skip-verify", named, target{"10.1.2.3:3307", true, "db.example", false}},
		{"preferred sends the name", "preferred", named, target{"10.1.2.3:3307", true, "db.example", false}},
		{"registered, no name", "qorb-unnamed", named, target{"10.1.2.3:3307", true, "db.example", true}},
		{"registered with a name keeps it", "qorb-pinned", named, target{"10.1.2.3:3307", true, "pinned.example", true}},
		{"IPv6", "true", resolver.Backend{Host: "db.example", Addr: "[2001:db8::7]:3306"}, target{"[2001:db8::7]:3306", true, "db.example", true}},
		{"no host name: the address's host", "true", resolver.Backend{Addr: "[::1]:3306"}, target{"[::1]:3306", true, "::1", true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := url.Values{}
			if tt.tls != "" {
				params.Set("tls", tt.tls)
			}
			o, err := NewOpener(qorb.DriverConfig{User: "app", Database: "app", Params: params})
			if err != nil {
				t.Fatal(err)
			}
			if got := targetOf(t, o, tt.b); got != tt.want {
				t.Errorf("target = %+v, want %+v", got, tt.want)
			}
			// The template keeps its placeholder for the next connection.
			if o.cfg.Addr != placeholderAddr {
				t.Errorf("template address = %q", o.cfg.Addr)
			}
			if tc := o.cfg.TLS; tc != nil && tc.ServerName != "" && tc.ServerName != placeholderHost && tc.ServerName != "pinned.example" {
				t.Errorf("template ServerName = %q", tc.ServerName)
			}
		})
	}
}

func TestConfigForBadAddress(t *testing.T) {
	o, err := NewOpener(qorb.DriverConfig{User: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"", "db.example", "db.example:0", "db.example:70000", ":3306"} {
		if _, err := o.configFor(resolver.Backend{Addr: addr}); err == nil {
			t.Errorf("configFor(Addr %q) succeeded, want an error", addr)
		}
	}
}

func TestNewOpenerParams(t *testing.T) {
	o, err := NewOpener(qorb.DriverConfig{
		User:     "app",
		Password: "p@ss/w:rd?&",
		Database: "my db",
		Params: url.Values{
			"parseTime":            {"true"},
			"timeout":              {"5s"},
			"loc":                  {"Europe/Berlin"},
			"charset":              {"utf8mb4,utf8"},
			"time_zone":            {"'+00:00'"},
			"sql_mode":             {"'ANSI,STRICT_ALL_TABLES'"},
			"connectionAttributes": {"team:billing,env:prod"},
			"interpolateParams":    {"true"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.User != "app" || c.Passwd != "p@ss/w:rd?&" || c.DBName != "my db" {
		t.Errorf("user, password, database = %q, %q, %q", c.User, c.Passwd, c.DBName)
	}
	if !c.ParseTime || c.Timeout != 5*time.Second || c.Loc.String() != "Europe/Berlin" || !c.InterpolateParams {
		t.Errorf("parseTime, timeout, loc, interpolateParams = %v, %v, %v, %v", c.ParseTime, c.Timeout, c.Loc, c.InterpolateParams)
	}
	if c.ConnectionAttributes != "team:billing,env:prod" {
		t.Errorf("connectionAttributes = %q", c.ConnectionAttributes)
	}
	want := map[string]string{"time_zone": "'+00:00'", "sql_mode": "'ANSI,STRICT_ALL_TABLES'"}
	if !reflect.DeepEqual(c.Params, want) {
		t.Errorf("system variables = %q, want %q", c.Params, want)
	}
	// The driver's defaults, from mysql.NewConfig.
	if !c.CheckConnLiveness || !c.AllowNativePasswords || c.Net != "tcp" {
		t.Errorf("CheckConnLiveness, AllowNativePasswords, Net = %v, %v, %q", c.CheckConnLiveness, c.AllowNativePasswords, c.Net)
	}
}

func TestNewOpenerErrors(t *testing.T) {
	const password = "Pw-s3cret"
	tests := []struct {
		name   string
		params url.Values
		want   string
	}{
		{"bad bool", url.Values{"parseTime": {"maybe"}}, "maybe"},
		{"bad duration", url.Values{"timeout": {"soon"}}, "soon"},
		{"unknown TLS config", url.Values{"tls": {"nonesuch"}}, "nonesuch"},
		{"unknown location", url.Values{"loc": {"Nowhere/Atlantis"}}, "Atlantis"},
		{"bad maxAllowedPacket", url.Values{"maxAllowedPacket": {"big"}}, "big"},
		{"strict, on which the driver panics", url.Values{"strict": {"true"}}, "strict"},
		{"password, which the driver would SET", url.Values{"password": {"x"}}, "user information"},
		{"pool parameter", url.Values{"pool_max_conns": {"4"}}, "pool_max_conns"},
		{"target_session_attrs", url.Values{"target_session_attrs": {"primary"}}, "target_session_attrs"},
		{"dns_server", url.Values{"dns_server": {"10.0.0.53"}}, "dns_server"},
		{"replica_srv", url.Values{"replica_srv": {"replicas.example"}}, "replica_srv"},
		{"unwritable value", url.Values{"charset": {"a&b"}}, "charset"},
		{"unwritable name", url.Values{"a=b": {"c"}}, "a=b"},
		{"password in a value", url.Values{"parseTime": {password}}, "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewOpener(qorb.DriverConfig{User: "app", Password: password, Params: tt.params})
			if err == nil {
				t.Fatal("NewOpener succeeded, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "mysqldialect: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q: want it to start with mysqldialect: and mention %q", msg, tt.want)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("error shows the password: %q", msg)
			}
		})
	}
}

func TestParseNative(t *testing.T) {
	tests := []struct {
		name     string
		dsn      string
		backends []string
		user     string
		password string
		db       string
		role     qorb.Role
		reset    bool
		maxConns int
		vars     map[string]string // system variables the driver will set
	}{
		{
			name:     "one host",
			dsn:      "app:secret@tcp(10.0.0.1:3307)/app?parseTime=true&pool_max_conns=5",
			backends: []string{"10.0.0.1:3307"},
			user:     "app", password: "secret", db: "app",
			maxConns: 5,
		},
		{
			name:     "several hosts, default port, IPv6",
			dsn:      "app@tcp(db1.example:3306, db2.example,[2001:db8::3]:3310)/app?target_session_attrs=read-only&pool_reset_session=true&time_zone=%27%2B00%3A00%27",
			backends: []string{"db1.example:3306", "db2.example:3306", "[2001:db8::3]:3310"},
			user:     "app", db: "app",
			role:  qorb.RoleReplica,
			reset: true,
			vars:  map[string]string{"time_zone": "'+00:00'"},
		},
		{
			name:     "the same address twice is one backend",
			dsn:      "app@tcp(10.0.0.1,10.0.0.1:3306)/app",
			backends: []string{"10.0.0.1:3306"},
			user:     "app", db: "app",
		},
		{
			name:     "no address",
			dsn:      "root@/test",
			backends: []string{"127.0.0.1:3306"},
			user:     "root", db: "test",
		},
		{
			name:     "network without address",
			dsn:      "root@tcp/test",
			backends: []string{"127.0.0.1:3306"},
			user:     "root", db: "test",
		},
		{
			name:     "nothing but the database",
			dsn:      "/test",
			backends: []string{"127.0.0.1:3306"},
			db:       "test",
		},
		{
			name:     "password with the DSN's punctuation",
			dsn:      "app:p@ss:w(o)r/d@tcp6([::1]:3306)/app",
			backends: []string{"[::1]:3306"},
			user:     "app", password: "p@ss:w(o)r/d", db: "app",
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
			}
			if !reflect.DeepEqual(got, tt.backends) {
				t.Errorf("backends = %q, want %q", got, tt.backends)
			}
			c := n.opener.cfg
			if c.User != tt.user || c.Passwd != tt.password || c.DBName != tt.db {
				t.Errorf("user, password, database = %q, %q, %q", c.User, c.Passwd, c.DBName)
			}
			if c.Addr != placeholderAddr {
				t.Errorf("template address = %q", c.Addr)
			}
			if n.settings.DefaultRole != tt.role || n.settings.Reset != tt.reset {
				t.Errorf("role, reset = %v, %v", n.settings.DefaultRole, n.settings.Reset)
			}
			if n.settings.Policy.MaxSlots != tt.maxConns {
				t.Errorf("MaxSlots = %d, want %d", n.settings.Policy.MaxSlots, tt.maxConns)
			}
			if len(c.Params) != len(tt.vars) || (len(tt.vars) > 0 && !reflect.DeepEqual(c.Params, tt.vars)) {
				t.Errorf("system variables = %q, want %q", c.Params, tt.vars)
			}
		})
	}
}

func TestParseNativeErrors(t *testing.T) {
	tests := []struct {
		dsn  string
		want string
	}{
		{"app:Secr3t@tcp(10.0.0.1:3306)", "'/'"},
		{"app:Secr3t@unix(relative.sock)/app", "absolute path"},
		{"app:Secr3t@tcp(/run/mysqld/mysqld.sock)/app", "unix(/path/to/socket)"},
		{"app:Secr3t@tcp(10.0.0.1:3306/app", "')'"},
		{"app:Secr3t@tcp(10.0.0.1:99999)/app", "port"},
		{"app:Secr3t@tcp(10.0.0.1:3306)/app?parseTime=maybe", "maybe"},
		{"app:Secr3t@tcp(10.0.0.1:3306)/app?strict=true", "strict"},
		{"app@tcp(10.0.0.1:3306)/app?password=Secr3t", "user information"},
		{"app:Secr3t@tcp(10.0.0.1:3306)/app?tls=nonesuch", "nonesuch"},
		{"app:Secr3t@tcp(10.0.0.1:3306)/app?pool_nonsense=1", "pool_nonsense"},
		{"app:Secr3t@tcp(10.0.0.1:3306)/app?target_session_attrs=writable", "target_session_attrs"},
		{"app:Secr3t@tcp(10.0.0.1:3306)/a%zzpp", "dbname"},
	}
	for _, tt := range tests {
		_, err := parseNative(tt.dsn)
		if err == nil {
			t.Errorf("parseNative(%q) succeeded, want an error", tt.dsn)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, qorb.ErrBadDSN) || !strings.Contains(msg, tt.want) {
			t.Errorf("parseNative(%q) = %q, want it to wrap qorb.ErrBadDSN and mention %q", tt.dsn, msg, tt.want)
		}
		if strings.Contains(msg, "Secr3t") || strings.Contains(msg, placeholderHost) {
			t.Errorf("parseNative(%q) = %q: shows the password or the placeholder", tt.dsn, msg)
		}
	}
}

// TestNewConnectorSRVOnly checks that NewConnector refuses the parameters
// only an SRV name can use, as a static qorb DSN does and with its message,
// instead of ignoring them.
func TestNewConnectorSRVOnly(t *testing.T) {
	for _, param := range []string{"dns_server=10.0.0.53", "replica_srv=replicas.example"} {
		_, static := qorb.OpenConnector("mysql://app@10.0.0.1/app?" + param)
		dsn := "app:Secr3t@tcp(10.0.0.1:3306)/app?" + param
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

func TestDialect(t *testing.T) {
	var d Dialect
	if d.Name() != "mysql" || d.Service() != "_mysql._tcp" || d.DefaultPort() != 3306 {
		t.Errorf("Name, Service, DefaultPort = %q, %q, %d", d.Name(), d.Service(), d.DefaultPort())
	}
	o, err := d.Open(qorb.DriverConfig{Params: url.Values{"parseTime": {"perhaps"}}})
	if err == nil || o != nil {
		t.Errorf("Open(bad parseTime) = %v, %v; want a nil Opener and an error", o, err)
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

// FuzzParseNative: any string either parses, with backends a static
// resolver takes, or fails with an error that wraps qorb.ErrBadDSN and
// does not show the password; nothing panics (the driver itself panics on
// some DSNs).
func FuzzParseNative(f *testing.F) {
	for _, s := range []string{
		"app:secret@tcp(10.0.0.1:3307)/app?parseTime=true&pool_max_conns=5",
		"app@tcp(db1.example:3306, db2.example,[2001:db8::3]:3310)/app?target_session_attrs=read-only",
		"root@/test", "/test", "app:p@ss:w(o)r/d@tcp6([::1]:3306)/app", "a@tcp(h)/db?strict=1",
		"a@tcp(h)/db?loc=%zz", "a@tcp(h/db", "a@unix(/s)/db", "a@tcp(h)/db?tls=nonesuch&&x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		n, err := parseNative(dsn)
		if err != nil {
			if !errors.Is(err, qorb.ErrBadDSN) {
				t.Fatalf("parseNative(%q) = %v, want it to wrap ErrBadDSN", dsn, err)
			}
			if pw := fuzzPassword(dsn); len(pw) >= 6 && strings.Contains(err.Error(), pw) {
				t.Fatalf("parseNative(%q) = %v: shows the password", dsn, err)
			}
			return
		}
		if _, err := resolver.NewStatic(n.backends...); err != nil {
			t.Fatalf("parseNative(%q): backends %v: %v", dsn, n.backends, err)
		}
	})
}

// fuzzPassword finds the password of dsn where the driver does.
func fuzzPassword(dsn string) string {
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		return ""
	}
	at := strings.LastIndexByte(dsn[:slash], '@')
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(dsn[:at], ":")
	return pw
}

// FuzzNewOpener: any parameter either is taken or fails with an error;
// nothing panics.
func FuzzNewOpener(f *testing.F) {
	f.Add("parseTime", "true")
	f.Add("strict", "1")
	f.Add("loc", "Europe/Berlin")
	f.Add("charset", "utf8mb4,utf8")
	f.Add("tls", "skip-verify")
	f.Fuzz(func(t *testing.T, k, v string) {
		o, err := NewOpener(qorb.DriverConfig{User: "app", Password: "Pw-s3cret", Params: url.Values{k: {v}}})
		if err != nil {
			if strings.Contains(err.Error(), "Pw-s3cret") {
				t.Fatalf("NewOpener(%q=%q) = %v: shows the password", k, v, err)
			}
			return
		}
		if o.cfg.Passwd != "Pw-s3cret" || o.cfg.Addr != placeholderAddr {
			t.Fatalf("NewOpener(%q=%q): password %q, address %q", k, v, o.cfg.Passwd, o.cfg.Addr)
		}
	})
}
