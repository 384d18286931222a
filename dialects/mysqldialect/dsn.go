package mysqldialect

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/qorb-go/qorb"
	"github.com/qorb-go/qorb/resolver"
)

// NewConnector starts a qorb connector for a go-sql-driver/mysql DSN,
// [user[:password]@][net[(addr)]]/dbname[?params], exactly as the driver
// takes it, except that the address may list several backends separated
// by commas: "app:secret@tcp(10.0.0.1:3306,10.0.0.2:3306)/app?parseTime=true".
// The backends are a static list; an address without a port gets 3306,
// and no address at all means 127.0.0.1:3306, as in the driver. The
// network may be tcp, tcp4 or tcp6; unix, each address a socket path
// ("app@unix(/run/mysqld/mysqld.sock)/app", /tmp/mysql.sock without one);
// or a network registered with [mysql.RegisterDialContext], each address
// a backend handed to that dialer as written. TLS verifies the host name
// of TCP backends only.
//
// qorb's own parameters ([qorb.OwnParam]) are taken out before the driver
// sees the DSN, which would otherwise send them to the server as system
// variables; target_session_attrs sets the connector's default role.
// dns_server and replica_srv are errors, since nothing is looked up in SRV
// records.
//
// Errors wrap [qorb.ErrBadDSN] and never show the password. The caller
// closes the connector, or the *sql.DB given it.
func NewConnector(dsn string) (*qorb.Connector, error) {
	n, err := parseNative(dsn)
	if err != nil {
		return nil, err
	}
	return qorb.NewStaticConnector(n.opener, n.backends, n.settings)
}

// native is a go-sql-driver/mysql DSN taken apart.
type native struct {
	opener   *Opener
	backends []resolver.Backend
	settings qorb.Settings
}

// parseNative takes the address list and qorb's parameters out of a
// go-sql-driver/mysql DSN and parses the rest with the driver, with
// placeholderAddr as its address. It finds the DSN's parts where the
// driver does: the database after the last '/', the user information
// before the last '@' ahead of it, the password after the first ':' in
// that.
func parseNative(dsn string) (native, error) {
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		return native{}, fmt.Errorf("%w: mysqldialect: want [user[:password]@][net[(addr)]]/dbname[?params]: no '/' before the database name", qorb.ErrBadDSN)
	}
	left, right := dsn[:slash], dsn[slash+1:]
	var creds, password string
	netAddr := left
	hasCreds := false
	if at := strings.LastIndexByte(left, '@'); at >= 0 {
		creds, netAddr, hasCreds = left[:at], left[at+1:], true
		if _, pw, ok := strings.Cut(creds, ":"); ok {
			password = pw
		}
	}
	// bad fails with msg; what in it comes from the driver or the
	// resolver must have been scrubbed of the password.
	bad := func(msg string) (native, error) {
		return native{}, fmt.Errorf("%w: mysqldialect: %s", qorb.ErrBadDSN, msg)
	}

	network, addrs := netAddr, ""
	if p := strings.IndexByte(netAddr, '('); p >= 0 {
		if !strings.HasSuffix(netAddr, ")") {
			return bad("network address not closed with ')'")
		}
		network, addrs = netAddr[:p], netAddr[p+1:len(netAddr)-1]
	}
	backends, parseNet, err := nativeBackends(network, addrs)
	if err != nil {
		return bad(scrub(err.Error(), password))
	}

	dbname, query, _ := strings.Cut(right, "?")
	var pairs []string
	params := url.Values{}
	if query != "" {
		pairs = strings.Split(query, "&")
	}
	for _, raw := range pairs {
		k, v, ok := strings.Cut(raw, "=")
		if !ok {
			continue // the driver ignores it too
		}
		if dec, err := url.QueryUnescape(v); err == nil {
			v = dec
		}
		params[k] = append(params[k], v)
	}
	settings, err := qorb.TakeSettings(params)
	if err != nil {
		return native{}, err
	}
	var kept []string
	for _, raw := range pairs {
		k, _, _ := strings.Cut(raw, "=")
		if _, ok := params[k]; ok || !strings.Contains(raw, "=") {
			switch k {
			case "strict", "password":
				return bad(strings.TrimPrefix(checkParam(k).Error(), "mysqldialect: "))
			}
			kept = append(kept, raw)
		}
	}

	var b strings.Builder
	if hasCreds {
		b.WriteString(creds)
		b.WriteByte('@')
	}
	b.WriteString(parseNet + "(" + placeholderAddr + ")/" + dbname)
	if len(kept) > 0 {
		b.WriteString("?" + strings.Join(kept, "&"))
	}
	cfg, err := mysql.ParseDSN(b.String())
	if err != nil {
		return bad(scrub(err.Error(), password))
	}
	return native{opener: &Opener{cfg: cfg}, backends: backends, settings: settings}, nil
}

// nativeBackends returns the backends of a go-sql-driver/mysql DSN's
// network and address list, and the network to parse the rest of the DSN
// with: the DSN's own for TCP (tcp, tcp4 or tcp6), plain tcp for the
// others, whose network each backend carries. Its errors quote no part of
// the DSN, which could be part of a password in a malformed one.
func nativeBackends(network, addrs string) ([]resolver.Backend, string, error) {
	var list []string
	if addrs != "" {
		list = strings.Split(addrs, ",")
		for i, a := range list {
			list[i] = strings.TrimSpace(a)
		}
	}
	var backends []resolver.Backend
	parseNet := "tcp"
	switch network {
	case "", "tcp", "tcp4", "tcp6":
		if network != "" {
			parseNet = network
		}
		if len(list) == 0 {
			list = []string{"127.0.0.1:3306"} // the driver's default
		}
		var err error
		if backends, err = resolver.ParseAddrs(3306, list...); err != nil {
			return nil, "", fmt.Errorf("address list: %v", err)
		}
		for _, b := range backends {
			if b.Network != "" {
				return nil, "", errors.New("address list: a Unix socket goes in unix(/path/to/socket), not in tcp(...)")
			}
		}
	default:
		if len(list) == 0 {
			if network != resolver.NetworkUnix {
				return nil, "", errors.New("a network other than tcp or unix needs an address for its dialer")
			}
			list = []string{"/tmp/mysql.sock"} // the driver's default
		}
		for _, a := range list {
			b := resolver.Backend{Host: a, Addr: a, Network: network, Weight: 1}
			if err := b.Validate(); err != nil {
				return nil, "", fmt.Errorf("address list: %v", err)
			}
			backends = append(backends, b)
		}
	}
	// The same address twice is one backend.
	var out []resolver.Backend
	seen := map[resolver.Key]bool{}
	for _, b := range backends {
		if !seen[b.Key()] {
			seen[b.Key()] = true
			out = append(out, b)
		}
	}
	return out, parseNet, nil
}
