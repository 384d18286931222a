package dbtest

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// HAProxy check timing in [StartHAProxy]'s configuration: each server's
// Patroni endpoint is asked every HAProxyCheckInterval, and a server is
// taken out after HAProxyFall failed checks in a row and back after one
// good one.
const (
	HAProxyCheckInterval = time.Second
	HAProxyFall          = 2
)

// HAProxy is an HAProxy 2.6 in front of a [PatroniCluster], as Patroni's
// documentation sets it up: a primary port whose servers are checked with
// Patroni's GET /primary and a replica port (round robin) checked with GET
// /replica, both closing the sessions of a server taken out
// (on-marked-down shutdown-sessions). Made by [StartHAProxy]; killed when
// the test ends.
type HAProxy struct {
	d           *daemon
	primaryPort int
	replicaPort int
	statsPort   int
	cluster     *PatroniCluster
}

// StartHAProxy starts HAProxy in front of every node of c and waits until
// its checks agree with Patroni: the leader alone behind the primary port,
// the other nodes behind the replica port.
func StartHAProxy(t testing.TB, c *PatroniCluster) *HAProxy {
	t.Helper()
	progs, err := lookPrograms("haproxy")
	if err != nil {
		t.Fatal(err)
	}
	acct, err := lookupAccount("postgres")
	if err != nil {
		t.Fatal(err)
	}
	h := &HAProxy{cluster: c}
	dir := filepath.Join(c.dir, fmt.Sprintf("haproxy%d", serial.Add(1)))
	if err := acct.mkdir(dir); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "haproxy.cfg")
	h.d = &daemon{
		name: c.Scope + "-haproxy", acct: acct, dir: dir, logPath: filepath.Join(dir, "haproxy.log"),
		path: progs["haproxy"], args: []string{"-db", "-f", confPath},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dbtest: %s log tail:\n%s", h.d.name, h.d.logTail())
		}
		if err := h.d.kill(); err != nil {
			t.Error(err)
		}
	})
	err = startOnFreePorts(h.d, 3, func(ports []int) error {
		h.primaryPort, h.replicaPort, h.statsPort = ports[0], ports[1], ports[2]
		return os.WriteFile(confPath, []byte(h.config()), 0o644)
	}, "the stats page", func() error {
		_, err := h.states(context.Background())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.WaitRouting(t, leader)
	return h
}

// config returns the HAProxy configuration.
func (h *HAProxy) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen stats
    mode http
    bind 127.0.0.1:%d
    stats enable
    stats uri /stats
`, h.statsPort)
	for _, l := range []struct {
		name, check string
		port        int
	}{{"primary", "/primary", h.primaryPort}, {"replica", "/replica", h.replicaPort}} {
		fmt.Fprintf(&b, `listen %s
    bind 127.0.0.1:%d
    balance roundrobin
    option httpchk OPTIONS %s
    http-check expect status 200
    default-server inter %dms fall %d rise 1 on-marked-down shutdown-sessions
`, l.name, l.port, l.check, HAProxyCheckInterval.Milliseconds(), HAProxyFall)
		for _, nd := range h.cluster.Nodes {
			fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check port %d\n", nd.name, nd.port, nd.restPort)
		}
	}
	return b.String()
}

// states returns the state of every server HAProxy knows, by proxy ("primary",
// "replica") and server (node name): "UP", "DOWN", "UP 1/2" (up, one check
// failed)… as its stats page (CSV) gives them.
func (h *HAProxy) states(ctx context.Context) (map[string]map[string]string, error) {
	body, err := h.cluster.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/stats;csv", h.statsPort))
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(body), "# "))).ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("dbtest: HAProxy stats: %v", err)
	}
	col := func(name string) int { return slices.Index(rows[0], name) }
	px, sv, st := col("pxname"), col("svname"), col("status")
	if px < 0 || sv < 0 || st < 0 {
		return nil, fmt.Errorf("dbtest: HAProxy stats without pxname, svname, status: %v", rows[0])
	}
	out := make(map[string]map[string]string)
	for _, r := range rows[1:] {
		if len(r) <= max(px, sv, st) || r[sv] == "FRONTEND" || r[sv] == "BACKEND" {
			continue
		}
		if out[r[px]] == nil {
			out[r[px]] = make(map[string]string)
		}
		out[r[px]][r[sv]] = r[st]
	}
	return out, nil
}

// WaitRouting waits until HAProxy sends its primary port to leader alone and
// its replica port to every other node.
func (h *HAProxy) WaitRouting(t testing.TB, leader *PatroniNode) {
	t.Helper()
	var last map[string]map[string]string
	err := poll(haTimeout, "HAProxy to route to leader "+leader.name, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		last, err = h.states(ctx)
		if err != nil {
			return false, nil
		}
		for _, nd := range h.cluster.Nodes {
			want := map[bool]string{true: "UP", false: "DOWN"}
			if last["primary"][nd.name] != want[nd == leader] || last["replica"][nd.name] != want[nd != leader] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v (servers: %v)", err, last)
	}
}

// PrimaryPort returns the port of HAProxy's primary listener on 127.0.0.1.
func (h *HAProxy) PrimaryPort() int { return h.primaryPort }

// ReplicaPort returns the port of HAProxy's replica listener on 127.0.0.1.
func (h *HAProxy) ReplicaPort() int { return h.replicaPort }

// PrimaryDSN returns a keyword/value connection string for [User] on
// [Database] through the primary port.
func (h *HAProxy) PrimaryDSN() string { return postgresDSN(h.primaryPort) }

// ReplicaDSN returns a keyword/value connection string for [User] on
// [Database] through the replica port.
func (h *HAProxy) ReplicaDSN() string { return postgresDSN(h.replicaPort) }
