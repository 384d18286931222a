package qorb

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/qorb-go/qorb/resolver"
)

func TestOwnParam(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"pool_max_conns", true},
		{"pool_max_lag", true},
		{"pool_bogus", true}, // unknown, but still qorb's: TakeSettings rejects it
		{"dns_server", true},
		{"replica_srv", true},
		{"target_session_attrs", true},
		{"pool", false},
		{"poolmax", false},
		{"sslmode", false},
		{"DNS_SERVER", false},
		{"replica", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := OwnParam(tt.name); got != tt.want {
			t.Errorf("OwnParam(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestOwnParamMatchesTakeSettings checks that TakeSettings takes out
// exactly the parameters OwnParam names, so that the dialects' guards and
// the DSN parser cannot drift apart.
func TestOwnParamMatchesTakeSettings(t *testing.T) {
	params := url.Values{
		"dns_server":           {"127.0.0.1"},
		"replica_srv":          {"replicas.example"},
		"target_session_attrs": {"read-only"},
		"sslmode":              {"require"},
		"parseTime":            {"true"},
		"application_name":     {"x"},
	}
	for k := range poolParams {
		v := "1"
		switch k {
		case "pool_reset_session":
			v = "true"
		case "pool_log":
			v = "default"
		}
		params[k] = []string{v}
	}
	all := make([]string, 0, len(params))
	for k := range params {
		all = append(all, k)
	}
	if _, err := TakeSettings(params); err != nil {
		t.Fatalf("TakeSettings: %v", err)
	}
	for _, k := range all {
		_, left := params[k]
		if left == OwnParam(k) {
			t.Errorf("%s: left for the driver = %v, but OwnParam = %v", k, left, OwnParam(k))
		}
	}
}

func TestForHosts(t *testing.T) {
	if err := (Settings{MaxLag: 1, Reset: true}).ForHosts(); err != nil {
		t.Errorf("ForHosts() = %v for settings that need no DNS", err)
	}
	tests := []struct {
		s    Settings
		want string
	}{
		{Settings{DNSServers: []string{"127.0.0.1:53"}}, "dns_server is for +srv DSNs only"},
		{Settings{ReplicaSRV: "replicas.example"}, "replica_srv is for +srv DSNs only"},
	}
	for _, tt := range tests {
		err := tt.s.ForHosts()
		if !errors.Is(err, ErrBadDSN) || err.Error() != "qorb: bad DSN: "+tt.want {
			t.Errorf("%+v.ForHosts() = %v, want ErrBadDSN saying %q", tt.s, err, tt.want)
		}
	}
}

// TestStaticDSNForHosts checks that a static qorb DSN refuses what only
// an SRV name can use with the message of Settings.ForHosts, the one the
// dialects' native constructors give too.
func TestStaticDSNForHosts(t *testing.T) {
	for _, param := range []string{"dns_server=127.0.0.1", "replica_srv=replicas.example"} {
		dsn := "fake://app:" + secret + "@h/db?" + param
		_, err := parseDSN(dsn)
		params, _ := url.ParseQuery(param)
		s, terr := TakeSettings(params)
		if terr != nil {
			t.Fatal(terr)
		}
		want := s.ForHosts()
		if want == nil {
			t.Fatalf("%s: ForHosts() = nil, want an error", param)
		}
		if !errors.Is(err, ErrBadDSN) || !strings.HasSuffix(err.Error(), ": "+want.Error()) {
			t.Errorf("parseDSN(%q) = %v, want it to end with %q", dsn, err, want)
		}
	}
}

// unusedOpener is an Opener for connectors that must fail before they
// open anything.
type unusedOpener struct{ Opener }

func TestNewStaticConnectorErrors(t *testing.T) {
	good := []resolver.Backend{{Host: "h", Addr: "h:1", Weight: 1}}
	tests := []struct {
		name     string
		backends []resolver.Backend
		s        Settings
		want     string
	}{
		{"replica_srv", good, Settings{ReplicaSRV: "r.example"}, Settings{ReplicaSRV: "r.example"}.ForHosts().Error()},
		{"dns_server", good, Settings{DNSServers: []string{"127.0.0.1:53"}}, Settings{DNSServers: []string{"x"}}.ForHosts().Error()},
		{"bad address", []resolver.Backend{{Host: "h", Addr: "h"}}, Settings{}, `"h"`},
		{"listed twice", append(good, good...), Settings{}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewStaticConnector(unusedOpener{}, tt.backends, tt.s)
			if err == nil {
				c.Close()
				t.Fatal("NewStaticConnector succeeded, want an error")
			}
			if !errors.Is(err, ErrBadDSN) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewStaticConnector = %v, want ErrBadDSN mentioning %q", err, tt.want)
			}
		})
	}
}

// TestTakeSettingsRefusesBadValues checks that every value out of a
// parameter's range fails in TakeSettings, wrapping ErrBadDSN and naming
// the parameter, instead of passing to NewConnector, which would name a
// Go field or silently take a default.
func TestTakeSettingsRefusesBadValues(t *testing.T) {
	tests := []struct {
		param, value string
		want         string // in the error
	}{
		{"pool_claim_timeout", "-1s", "must be positive"},
		{"pool_claim_timeout", "0", "must be positive"},
		{"pool_connect_timeout", "-1s", "must be positive"},
		{"pool_health_check_timeout", "-1s", "must be positive"},
		{"pool_backoff_min", "-1s", "must be positive"},
		{"pool_backoff_max", "-1s", "must be positive"},
		{"pool_backoff_max", "0s", "must be positive"},
		{"pool_rebalance_delay", "-1s", "must be positive"},
		{"pool_rebalance_interval", "-1s", "must be positive"},
		{"pool_close_timeout", "-1s", "must be positive"},
		{"pool_max_lag", "-1s", "must not be negative"},
		{"pool_health_check_period", "0", "0 would mean the default"},
		{"pool_suspect_after", "0s", "0 would mean the default"},
		{"pool_slow_start", "0", "0 would mean the default"},
		{"pool_probe_backoff_max", "-1s", "must be positive"},
		{"pool_connect_rate", "0", "0 would mean the default"},
		{"pool_connect_rate", "NaN", "want a number"},
		{"pool_connect_rate", "1e9", "out of range"},
		{"pool_connect_burst", "0", "out of range"},
		{"pool_max_conn_lifetime", "0", "0 would mean the default"},
		{"pool_max_conn_idle_time", "0", "0 would mean the default"},
		{"pool_claim_timeout", "9223372037", "out of range"},      // seconds that overflow a Duration
		{"pool_claim_timeout", "99999999999h", "want a duration"}, // Go's parser overflows
		{"pool_claim_timeout", "99999999999999999999", "out of range"},
		{"pool_max_conns", "-1", "want 1 to 10000"},
		{"pool_max_conns", "0", "want 1 to 10000"},
		{"pool_max_conns", "2147483648", "want 1 to 10000"},
		{"pool_max_conns", "99999999999999999999", "want 1 to 10000"},
		{"pool_max_conns_per_backend", "10000000", "want 1 to 10000"},
		{"pool_max_conns_per_backend", "0", "want 1 to 10000"},
		{"pool_max_waiters", "-1", "want 1 to"},
		{"pool_max_waiters", "0", "want 1 to"},
		{"pool_max_waiters", "2147483648", "want 1 to"},
		{"pool_offline_after", "-1", "want 1 to"},
		{"pool_offline_after", "0", "want 1 to"},
		{"pool_spares", "-2", "want -1 for none"},
		{"pool_spares", "0", "give -1 for none"},
		{"pool_spares", "20000", "want -1 to 10000"},
		{"pool_reset_session", "", "want true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.param+"="+tt.value, func(t *testing.T) {
			_, err := TakeSettings(url.Values{tt.param: {tt.value}})
			if !errors.Is(err, ErrBadDSN) || !strings.Contains(err.Error(), tt.param+"=") ||
				!strings.Contains(err.Error(), tt.want) {
				t.Errorf("TakeSettings(%s=%s) = %v, want ErrBadDSN naming %s and saying %q", tt.param, tt.value, err, tt.param, tt.want)
			}
		})
	}
}

// TestTakeSettingsAcceptsEdges checks the ends of the ranges and the
// documented ways to turn features off.
func TestTakeSettingsAcceptsEdges(t *testing.T) {
	for _, q := range []string{
		"pool_max_conns=1", "pool_max_conns=10000", "pool_max_conns_per_backend=10000",
		"pool_spares=-1", "pool_max_lag=0", "pool_health_check_period=-1s",
		"pool_suspect_after=-1", "pool_max_conn_lifetime=-1s", "pool_claim_timeout=9223372036",
		"pool_backoff_min=1s&pool_backoff_max=1s", "pool_max_waiters=1048576",
	} {
		params, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := TakeSettings(params); err != nil {
			t.Errorf("TakeSettings(%s) = %v, want it accepted", q, err)
		}
	}
}

// TestTakeSettingsBackoffOrder checks that a backoff minimum above the
// maximum, given or by default, names both parameters.
func TestTakeSettingsBackoffOrder(t *testing.T) {
	tests := []struct{ q, want string }{
		{"pool_backoff_min=2s&pool_backoff_max=1s", "pool_backoff_min (2s) is more than pool_backoff_max (1s)"},
		{"pool_backoff_min=1m", "pool_backoff_min (1m0s) is more than the default pool_backoff_max (30s)"},
		{"pool_backoff_max=10ms", "the default pool_backoff_min (20ms) is more than pool_backoff_max (10ms)"},
	}
	for _, tt := range tests {
		params, _ := url.ParseQuery(tt.q)
		_, err := TakeSettings(params)
		if !errors.Is(err, ErrBadDSN) || !strings.Contains(fmt.Sprint(err), tt.want) {
			t.Errorf("TakeSettings(%s) = %v, want ErrBadDSN saying %q", tt.q, err, tt.want)
		}
	}
}

// TestDNSServerParam checks that dns_server must name a server and may
// be given once (several servers go in one, comma separated).
func TestDNSServerParam(t *testing.T) {
	tests := []struct {
		values []string
		want   string
	}{
		{[]string{""}, "empty name server address"},
		{[]string{"127.0.0.1,"}, "empty name server address"},
		{[]string{" "}, "empty name server address"},
		{[]string{"127.0.0.1", "127.0.0.2"}, "dns_server given 2 times"},
	}
	for _, tt := range tests {
		_, err := TakeSettings(url.Values{"dns_server": tt.values})
		if !errors.Is(err, ErrBadDSN) || !strings.Contains(fmt.Sprint(err), tt.want) {
			t.Errorf("TakeSettings(dns_server=%q) = %v, want ErrBadDSN saying %q", tt.values, err, tt.want)
		}
	}
}
