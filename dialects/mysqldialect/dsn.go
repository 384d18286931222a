package mysqldialect

import (
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
// network is tcp, tcp4 or tcp6: unix sockets and networks registered with
// [mysql.RegisterDialContext] are not supported.
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
	switch network {
	case "":
		network = "tcp"
	case "tcp", "tcp4", "tcp6":
	default:
		// Not quoted: in a malformed DSN it could be part of the password.
		return bad("the network must be tcp, tcp4 or tcp6: qorb pools connections to host:port backends, so unix sockets and custom networks are not supported")
	}
	hosts := []string{"127.0.0.1:3306"}
	if addrs != "" {
		hosts = strings.Split(addrs, ",")
		for i, h := range hosts {
			hosts[i] = strings.TrimSpace(h)
		}
	}
	listed, err := resolver.ParseAddrs(3306, hosts...)
	if err != nil {
		return bad("address list: " + scrub(err.Error(), password))
	}
	// The same address twice is one backend.
	var backends []resolver.Backend
	seen := map[resolver.Key]bool{}
	for _, b := range listed {
		if !seen[b.Key()] {
			seen[b.Key()] = true
			backends = append(backends, b)
		}
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
	b.WriteString(network + "(" + placeholderAddr + ")/" + dbname)
	if len(kept) > 0 {
		b.WriteString("?" + strings.Join(kept, "&"))
	}
	cfg, err := mysql.ParseDSN(b.String())
	if err != nil {
		return bad(scrub(err.Error(), password))
	}
	return native{opener: &Opener{cfg: cfg}, backends: backends, settings: settings}, nil
}
