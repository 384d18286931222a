package qorb

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// dsnView is what a test compares of a parsed DSN.
type dsnView struct {
	Dialect  string
	SRV      string
	Hosts    []resolver.Backend
	User     string
	Password string
	Database string
	Params   url.Values
	Reset    bool
	Settings Settings
}

func viewOf(d parsedDSN) dsnView {
	v := dsnView{
		SRV:      d.srv,
		Hosts:    d.hosts,
		User:     d.driver.User,
		Password: d.driver.Password,
		Database: d.driver.Database,
		Params:   d.driver.Params,
		Reset:    d.settings.Reset,
		Settings: d.settings,
	}
	if d.dialect != nil {
		v.Dialect = d.dialect.Name()
	}
	return v
}

// static returns the backends of a static list of "host:port" addresses.
func static(addrs ...string) []resolver.Backend {
	bs, err := resolver.ParseAddrs(0, addrs...)
	if err != nil {
		panic(err)
	}
	return bs
}

func TestParseDSN(t *testing.T) {
	none := url.Values{}
	tests := []struct {
		name string
		dsn  string
		want dsnView
	}{
		{
			name: "srv",
			dsn:  "fake+srv://app:pw@db.example/appdb?sslmode=require",
			want: dsnView{Dialect: "fake", SRV: "_fake._tcp.db.example", User: "app", Password: "pw", Database: "appdb",
				Params: url.Values{"sslmode": {"require"}}},
		},
		{
			name: "srv, second dialect",
			dsn:  "fakemysql+srv://root@db.example/shop?parseTime=true",
			want: dsnView{Dialect: "fakemysql", SRV: "_mysql._tcp.db.example", User: "root", Database: "shop",
				Params: url.Values{"parseTime": {"true"}}},
		},
		{
			name: "srv, full SRV name",
			dsn:  "fake+srv://app@_pg._tcp.db.example/appdb",
			want: dsnView{Dialect: "fake", SRV: "_pg._tcp.db.example", User: "app", Database: "appdb", Params: none},
		},
		{
			name: "srv, no user, no database",
			dsn:  "fake+srv://db.example",
			want: dsnView{Dialect: "fake", SRV: "_fake._tcp.db.example", Params: none},
		},
		{
			name: "static with ports",
			dsn:  "fake://app@h1:5432,h2:5433/appdb",
			want: dsnView{Dialect: "fake", Hosts: static("h1:5432", "h2:5433"), User: "app", Database: "appdb", Params: none},
		},
		{
			name: "static without ports",
			dsn:  "fakemysql://root@db1,db2:3307,10.0.0.3/",
			want: dsnView{Dialect: "fakemysql", Hosts: static("db1:3306", "db2:3307", "10.0.0.3:3306"), User: "root", Params: none},
		},
		{
			name: "static, one host, parameters",
			dsn:  "fake://h?application_name=me",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), Params: url.Values{"application_name": {"me"}}},
		},
		{
			name: "IPv6 in brackets",
			dsn:  "fake://[::1]:5433,[fe80::1],127.0.0.1/appdb",
			want: dsnView{Dialect: "fake", Hosts: static("[::1]:5433", "[fe80::1]:7000", "127.0.0.1:7000"), Database: "appdb", Params: none},
		},
		{
			name: "percent-encoding",
			dsn:  "fake://us%40er:p%40ss%3Aw%2Fo%3Frd%25@h/my%20db",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), User: "us@er", Password: "p@ss:w/o?rd%", Database: "my db", Params: none},
		},
		{
			name: "unescaped @ and : in the password",
			dsn:  "fake://u:p@ss:w@h/db",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), User: "u", Password: "p@ss:w", Database: "db", Params: none},
		},
		{
			name: "empty password",
			dsn:  "fake://u:@h",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), User: "u", Params: none},
		},
		{
			name: "every pool parameter",
			dsn: "fake://h/db?pool_max_conns=7&pool_max_conns_per_backend=3&pool_spares=2&pool_max_waiters=100" +
				"&pool_offline_after=5&pool_claim_timeout=250ms&pool_connect_timeout=3&pool_health_check_period=1m" +
				"&pool_health_check_timeout=2s&pool_backoff_min=10ms&pool_backoff_max=5s&pool_max_conn_lifetime=1h" +
				"&pool_max_conn_idle_time=10m&pool_rebalance_delay=50ms&pool_rebalance_interval=20s" +
				"&pool_close_timeout=7s&pool_reset_session=true&pool_suspect_after=250ms&pool_probe_backoff_max=3s" +
				"&pool_slow_start=-1s&pool_connect_rate=0.1&pool_connect_burst=2&sslmode=disable",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), Database: "db", Params: url.Values{"sslmode": {"disable"}}, Reset: true,
				Settings: Settings{
					Policy: pool.Policy{
						MaxSlots: 7, MaxPerBackend: 3, Spares: 2, MaxWaiters: 100, OfflineAfter: 5,
						SuspectAfter: 250 * time.Millisecond, ProbeBackoffMax: 3 * time.Second,
						SlowStart: -time.Second, ConnectRate: 0.1, ConnectBurst: 2,
						ClaimTimeout: 250 * time.Millisecond, ConnectTimeout: 3 * time.Second,
						HealthInterval: time.Minute, HealthTimeout: 2 * time.Second,
						BackoffMin: 10 * time.Millisecond, BackoffMax: 5 * time.Second,
						MaxLifetime: time.Hour, MaxIdleTime: 10 * time.Minute,
						RebalanceDelay: 50 * time.Millisecond, RebalanceInterval: 20 * time.Second,
					},
					Reset:        true,
					CloseTimeout: 7 * time.Second,
				}},
		},
		{
			name: "negative durations turn features off",
			dsn:  "fake://h/db?pool_max_conn_lifetime=-1s&pool_health_check_period=-1",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), Database: "db", Params: none,
				Settings: Settings{Policy: pool.Policy{MaxLifetime: -time.Second, HealthInterval: -time.Second}}},
		},
		{
			name: "negative turns slow start and the connect-rate limit off",
			dsn:  "fake://h/db?pool_slow_start=-1s&pool_connect_rate=-1",
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), Database: "db", Params: none,
				Settings: Settings{Policy: pool.Policy{SlowStart: -time.Second, ConnectRate: -1}}},
		},
		{
			name: "dns_server",
			dsn:  "fake+srv://db.example/appdb?dns_server=127.0.0.1:5353,127.0.0.2,::1,%20[::2],[::3]:54",
			want: dsnView{Dialect: "fake", SRV: "_fake._tcp.db.example", Database: "appdb", Params: none,
				Settings: Settings{DNSServers: []string{"127.0.0.1:5353", "127.0.0.2:53", "[::1]:53", "[::2]:53", "[::3]:54"}}},
		},
	}
	for _, attrs := range []struct {
		value string
		role  Role
	}{
		{"any", RoleAny}, {"read-write", RolePrimary}, {"primary", RolePrimary},
		{"read-only", RoleReplica}, {"standby", RoleReplica}, {"prefer-standby", RolePreferReplica},
	} {
		tests = append(tests, struct {
			name string
			dsn  string
			want dsnView
		}{
			name: "target_session_attrs=" + attrs.value,
			dsn:  "fake://h/db?target_session_attrs=" + attrs.value,
			want: dsnView{Dialect: "fake", Hosts: static("h:7000"), Database: "db", Params: none,
				Settings: Settings{DefaultRole: attrs.role}},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDSN(tt.dsn)
			if err != nil {
				t.Fatalf("parseDSN(%q): %v", tt.dsn, err)
			}
			if got := viewOf(d); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseDSN(%q) =\n%+v\nwant\n%+v", tt.dsn, got, tt.want)
			}
		})
	}
}

// secret is the password of every bad DSN below; no error may show it,
// nor its part before a '/' or '?' that ends the user info early.
const (
	secret     = "Xy7-hunter2-Qz"
	secretHead = "Xy7-hunter2"
)

func TestParseDSNErrors(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		want []string // in the message
	}{
		{"no scheme", "app:" + secret + "@h/db", []string{"want scheme://"}},
		{"empty scheme", "://app:" + secret + "@h/db", []string{"want scheme://"}},
		{"unknown scheme", "nope://app:" + secret + "@h/db", []string{`"nope"`, "fake, fake+srv, fakemysql, fakemysql+srv"}},
		{"unknown pool parameter", "fake://app:" + secret + "@h/db?pool_bogus=1&pool_max_conns=2", []string{"pool_bogus", "pool_max_conns_per_backend"}},
		{"unknown pool parameters", "fake://app:" + secret + "@h/db?pool_b=1&pool_a=2", []string{"pool_a, pool_b"}},
		{"bad duration", "fake://app:" + secret + "@h/db?pool_claim_timeout=soon", []string{"pool_claim_timeout", "soon"}},
		{"bad integer", "fake://app:" + secret + "@h/db?pool_max_conns=many", []string{"pool_max_conns", "many"}},
		{"bad boolean", "fake://app:" + secret + "@h/db?pool_reset_session=maybe", []string{"pool_reset_session"}},
		{"pool parameter twice", "fake://app:" + secret + "@h/db?pool_max_conns=1&pool_max_conns=2", []string{"pool_max_conns", "2 times"}},
		{"bad target_session_attrs", "fake://app:" + secret + "@h/db?target_session_attrs=bogus", []string{"target_session_attrs", "bogus"}},
		{"target_session_attrs twice", "fake://app:" + secret + "@h/db?target_session_attrs=any&target_session_attrs=primary", []string{"target_session_attrs"}},
		{"dns_server on a static DSN", "fake://app:" + secret + "@h/db?dns_server=127.0.0.1", []string{"dns_server", "+srv"}},
		{"replica_srv on a static DSN", "fake://app:" + secret + "@h/db?replica_srv=replicas.example", []string{"replica_srv", "+srv"}},
		{"+srv with a port", "fake+srv://app:" + secret + "@db.example:5432/db", []string{"+srv", "without a port"}},
		{"+srv with a list", "fake+srv://app:" + secret + "@a.example,b.example/db", []string{"+srv"}},
		{"no host", "fake://app:" + secret + "@/db", []string{"no host"}},
		{"no host, no database", "fake://app:" + secret + "@", []string{"no host"}},
		{"port out of range", "fake://app:" + secret + "@h:99999/db", []string{"99999"}},
		{"port zero", "fake://app:" + secret + "@h:0/db", []string{"h:0"}},
		{"bad escape in the password", "fake://app:" + secretHead + "%zz-Qz@h/db", []string{"password"}},
		{"bad escape in the user", "fake://a%zzpp:" + secret + "@h/db", []string{"user"}},
		{"bad escape in the database", "fake://app:" + secret + "@h/d%zzb", []string{"database"}},
		{"bad escape in a parameter", "fake://app:" + secret + "@h/db?a=%zz", []string{"parameters"}},
		{"bad escape in a host", "fake://app:" + secret + "@h%zz/db", []string{"host"}},
		// A password with an unescaped '/' or '?' ends the user info
		// early: the error must not show the start of it as a host.
		{"unescaped / in the password", "fake://app:" + secretHead + "/-Qz@h/db", []string{"percent-encode"}},
		{"unescaped ? in the password", "fake://app:" + secretHead + "?-Qz@h/db", []string{"percent-encode"}},
		// libpq and pgx take the password as a parameter too.
		{"password parameter", "fake://app@h/db?password=" + secret + "&pool_bogus=1", []string{"pool_bogus"}},
		{"sslpassword parameter", "fake://app@h/db?sslpassword=" + secret + "&pool_bogus=1", []string{"pool_bogus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDSN(tt.dsn)
			if err == nil {
				t.Fatalf("parseDSN(%q) = %+v, want an error", tt.dsn, viewOf(d))
			}
			if !errors.Is(err, ErrBadDSN) {
				t.Errorf("parseDSN(%q) = %v, want it to wrap ErrBadDSN", tt.dsn, err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("parseDSN(%q) = %q, want it to contain %q", tt.dsn, msg, w)
				}
			}
			if strings.Contains(msg, secretHead) {
				t.Errorf("parseDSN(%q) = %q, which shows the password", tt.dsn, msg)
			}
			if r := redact(tt.dsn); strings.Contains(r, secretHead) {
				t.Errorf("redact(%q) = %q, which shows the password", tt.dsn, r)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"fake://app:pw@h/db", "fake://app:xxxxx@h/db"},
		{"fake://app@h/db", "fake://app@h/db"},
		{"fake://h1:5432,h2/db?sslmode=require", "fake://h1:5432,h2/db?sslmode=require"},
		{"fake://app:p@ss@h/db", "fake://app:xxxxx@h/db"},
		{"fake://app:pw@h/db?application_name=me", "fake://app:xxxxx@h/db?application_name=me"},
		{"fake://app:pa/ss@h/db", "fake://app:xxxxx@h/db"},
		{"fake://app@h/db?password=pw&sslmode=require", "fake://app@h/db?password=xxxxx&sslmode=require"},
		{"fake://app@h/db?sslmode=require&sslpassword=pw", "fake://app@h/db?sslmode=require&sslpassword=xxxxx"},
		{"fake://app@h/db?pass%77ord=pw&sslmode=bogus", "fake://app@h/db?pass%77ord=xxxxx&sslmode=bogus"},
		{"fake://app@h/db?PASS%57ORD=pw", "fake://app@h/db?PASS%57ORD=xxxxx"},
		{"fake://app@h/db?pass%zzword=pw", "fake://app@h/db?pass%zzword=xxxxx"},
		{"fake://a/b:pw@h/db", "fake://a/b:xxxxx@h/db"},
		{"fake://@/:pw@h/db?x=a@b", "fake://@/:xxxxx@h/db?x=a@b"},
		{"fake://u@h/db?application_name=a:b@c", "fake://u@h/db?application_name=a:b@c"},
		{"h/db", "(unparsable DSN)"},
	}
	for _, tt := range tests {
		if got := redact(tt.dsn); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

// TestOpenConnectorErrors shows that the errors of the steps after
// parsing, through sql.Open, wrap ErrBadDSN and hide the password too.
func TestOpenConnectorErrors(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		want string
	}{
		{"the dialect rejects a parameter", "fake://app:" + secret + "@h/db?fake_reject=yes", "fake_reject=yes rejected"},
		{"bad name server", "fake+srv://app:" + secret + "@db.example/db?dns_server=not%20a%20server", "not a server"},
		{"bad SRV name", "fake+srv://app:" + secret + "@bad..example/db?dns_server=127.0.0.1", "bad..example"},
		{"bad DSN", "fake://app:" + secret + "@/db", "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sql.Open("qorb", tt.dsn)
			if err == nil {
				db.Close()
				t.Fatalf("sql.Open(%q) succeeded, want an error", tt.dsn)
			}
			if !errors.Is(err, ErrBadDSN) {
				t.Errorf("sql.Open(%q) = %v, want it to wrap ErrBadDSN", tt.dsn, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("sql.Open(%q) = %q, want it to contain %q", tt.dsn, err, tt.want)
			}
			if strings.Contains(err.Error(), secretHead) {
				t.Errorf("sql.Open(%q) = %q, which shows the password", tt.dsn, err)
			}
		})
	}
}

// TestOpenConnector shows that a DSN reaches the dialect without qorb's
// parameters, and that a +srv DSN starts an SRV resolver that Close stops
// with every goroutine it started.
func TestOpenConnector(t *testing.T) {
	before := runtime.NumGoroutine()
	o := &fakeOpener{}
	name := registerOpener(t, o)
	c, err := OpenConnector("fake+srv://app:pw@db.example/appdb?sslmode=require&pool_max_conns=2&dns_server=127.0.0.1:1&target_session_attrs=read-only&fake_opener=" + name)
	if err != nil {
		t.Fatal(err)
	}
	want := DriverConfig{User: "app", Password: "pw", Database: "appdb",
		Params: url.Values{"sslmode": {"require"}, "fake_opener": {name}}}
	if got := o.driverConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("the dialect was given %+v, want %+v", got, want)
	}
	if got := c.Stats().MaxSlots; got != 2 {
		t.Errorf("Stats().MaxSlots = %d, want 2 from pool_max_conns", got)
	}
	if c.router.def != RoleReplica {
		t.Errorf("default role = %v, want %v from target_session_attrs", c.router.def, RoleReplica)
	}
	if _, ok := c.Driver().(*Driver); !ok {
		t.Errorf("Driver() = %T, want *Driver", c.Driver())
	}
	if _, err := c.Driver().Open("fake://h/db"); err == nil {
		t.Error("Driver.Open succeeded, want an error pointing to sql.Open")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitGoroutines(t, before)
}

func TestNewConnectorErrors(t *testing.T) {
	r, err := resolver.NewStatic(backends(1)...)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want error // nil: any error
	}{
		{"no Opener", Config{Resolver: r}, nil},
		{"no Resolver", Config{Opener: &fakeOpener{}}, nil},
		{"bad policy", Config{Opener: &fakeOpener{}, Resolver: r, Settings: Settings{Policy: pool.Policy{MaxSlots: -1}}}, pool.ErrBadPolicy},
	}
	for _, tt := range tests {
		c, err := NewConnector(tt.cfg)
		if err == nil {
			c.Close()
			t.Errorf("%s: NewConnector succeeded, want an error", tt.name)
		} else if tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: NewConnector = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// waitGoroutines waits until no more than n goroutines run, and fails the
// test with their stacks if that does not happen within 5 s.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

// FuzzParseDSN checks that parsing never panics and that no error and no
// redacted DSN shows the password, escaped or not.
func FuzzParseDSN(f *testing.F) {
	f.Add("fake", "app", "pw-secret", "h1:5432,h2/db?sslmode=require", false)
	f.Add("fake+srv", "app", "pw-secret", "db.example/db?dns_server=127.0.0.1", false)
	f.Add("fake+srv", "app", "pw/secret", "db.example:5432/db", true)
	f.Add("fake", "app", "pw?secret", "h/db", true)
	f.Add("fake", "app", "p@ss:w0rd", "[::1]:5433,[fe80::1]/db?pool_bogus=1", true)
	f.Add("nope", "a%zz", "secret%zz", "h/db?pool_claim_timeout=soon", true)
	f.Add("fakemysql", "", "secretsecret", "/db?password=secretsecret", false)
	f.Fuzz(func(t *testing.T, scheme, user, password, tail string, raw bool) {
		// Any string at all: no panic.
		for _, s := range []string{tail, scheme + "://" + tail} {
			_, _ = parseDSN(s)
			_ = redact(s)
		}

		if raw && strings.Contains(password, "@") && strings.ContainsAny(password, "/?") {
			// "u:@h/@x" may be password "@h/" or host h: no parser can
			// tell, so this password cannot be looked for.
			return
		}
		build := func(pw string) string {
			if !raw {
				pw = url.UserPassword("", pw).String()[1:] // escaped, without the leading ':'
			}
			return scheme + "://" + url.User(user).String() + ":" + pw + "@" + tail
		}
		dsn := build(password)
		_, err := parseDSN(dsn)
		var shown []string
		if err != nil {
			shown = append(shown, err.Error())
		}
		shown = append(shown, redact(dsn))

		// Only a password that shows nowhere else can be looked for.
		without := build("")
		_, errWithout := parseDSN(without)
		elsewhere := func(s string) bool {
			return len(s) < 6 || strings.Contains(without, s) || strings.Contains(fmt.Sprint(errWithout), s) ||
				strings.Contains(fmt.Sprint(schemes()), s)
		}
		secrets := []string{password, url.UserPassword("", password).String()[1:]}
		if raw {
			// The part before an unescaped '/' or '?' may end the user
			// info early; it must not show either.
			if i := strings.IndexAny(password, "/?"); i >= 0 {
				secrets = append(secrets, password[:i])
			}
		}
		for _, s := range secrets {
			if elsewhere(s) {
				continue
			}
			for _, out := range shown {
				if strings.Contains(out, s) {
					t.Fatalf("for DSN %q: %q shows the password part %q", dsn, out, s)
				}
			}
		}
	})
}
