package qorb

import (
	"errors"
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
		if k == "pool_reset_session" {
			v = "true"
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
