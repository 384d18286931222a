package dbtest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Patroni's timing in the clusters StartPatroniCluster makes, the smallest
// that Patroni 3.0 with etcd 3.4 works with: loop_wait 1 s; retry_timeout
// 2 s, since the etcd3 leader race gives up when less than a second of its
// retry deadline is left; and ttl 5 s, Patroni's rule ttl ≥ loop_wait +
// 2 × retry_timeout, below which a busy machine makes the leader lose its
// key without any fault.
const (
	PatroniTTL          = 5 * time.Second
	PatroniLoopWait     = time.Second
	PatroniRetryTimeout = 2 * time.Second
)

// haTimeout bounds a wait on the HA stack: a leader elected, replicas
// streaming, HAProxy's checks settled.
const haTimeout = 60 * time.Second

// HAStackMissing returns an error that names the programs of the Patroni
// stack (patroni, etcd, haproxy) that are not installed, or nil. Tests skip
// with it: scripts/setup installs them.
func HAStackMissing() error {
	_, err := lookPrograms("patroni", "etcd", "haproxy")
	return err
}

// PatroniCluster is a PostgreSQL 15 cluster managed by Patroni 3.0 with a
// one-member etcd 3.4 as its DCS, made by [StartPatroniCluster]. Everything
// runs as the postgres user on free ports of 127.0.0.1, with its files under
// /dev/shm, and is killed and removed when the test that started it ends.
//
// The cluster uses synchronous_mode (so a promotion loses no acknowledged
// commit), failsafe_mode (so the primary keeps running while etcd is
// down, as long as it reaches every member), primary_start_timeout 0 (so a
// crashed primary fails over instead of restarting in place) and
// pg_rewind, and the timing of [PatroniTTL], [PatroniLoopWait] and
// [PatroniRetryTimeout].
type PatroniCluster struct {
	// Scope is Patroni's name for the cluster.
	Scope string
	// Nodes are the members, in start order; Nodes[0] bootstrapped the
	// cluster. Roles change; ask [PatroniCluster.Leader].
	Nodes []*PatroniNode

	dir        string
	etcd       *daemon
	etcdClient int
	http       *http.Client
}

// PatroniNode is one member of a [PatroniCluster]: a Patroni daemon and the
// PostgreSQL server it runs, which [User] reaches with [Password] on
// [Database].
type PatroniNode struct {
	name     string
	port     int // PostgreSQL
	restPort int // Patroni's REST API
	dir      string
	patroni  *daemon
	admin    *sql.DB
	http     *http.Client
	startOff int64 // size of the log before the last start
}

// StartPatroniCluster starts etcd and n Patroni nodes, waits until one is the
// leader, creates [User] and [Database] on it, and waits until every other
// node streams from it and one is its synchronous standby. It fails the test
// if a program is missing; check [HAStackMissing] first to skip instead.
func StartPatroniCluster(t testing.TB, n int) *PatroniCluster {
	t.Helper()
	progs, err := lookPrograms("patroni", "etcd")
	if err != nil {
		t.Fatal(err)
	}
	acct, _, scope, dir := instanceDir(t, "postgres", "patroni")
	c := &PatroniCluster{
		Scope: scope,
		dir:   dir,
		http:  &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second},
	}
	// Cleanups run last first: this one, registered before any daemon's,
	// removes the directory after all of them are gone.
	t.Cleanup(func() {
		if err := killUnder(c.dir); err != nil {
			t.Errorf("dbtest: tearing down %s: %v", scope, err)
		}
		if err := os.RemoveAll(c.dir); err != nil {
			t.Errorf("dbtest: tearing down %s: %v", scope, err)
		}
	})
	c.startEtcd(t, acct, progs["etcd"])
	for i := range n {
		c.Nodes = append(c.Nodes, c.newNode(t, acct, progs["patroni"], i))
	}
	// The first node bootstraps; the others join once it leads, each with a
	// pg_basebackup of it.
	first := c.Nodes[0]
	if err := c.startNode(first); err != nil {
		t.Fatal(err)
	}
	err = poll(haTimeout, "the bootstrap of "+scope, func() (bool, error) {
		if err := c.repairPorts(); err != nil {
			return false, err
		}
		return first.restCheck(context.Background(), "/primary") == nil, nil
	})
	if err != nil {
		t.Fatalf("%v\n--- log:\n%s", err, first.LogTail())
	}
	setup := []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", User, Password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", Database, User),
	}
	for _, q := range setup {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		_, err := first.admin.ExecContext(ctx, q)
		cancel()
		if err != nil {
			t.Fatalf("dbtest: %s: %s: %v", first.name, q, err)
		}
	}
	for _, nd := range c.Nodes[1:] {
		if err := c.startNode(nd); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitHealthy(t)
	return c
}

// startEtcd starts the cluster's etcd and waits until it is healthy.
func (c *PatroniCluster) startEtcd(t testing.TB, acct account, bin string) {
	t.Helper()
	dir := filepath.Join(c.dir, "etcd")
	if err := acct.mkdir(dir); err != nil {
		t.Fatal(err)
	}
	c.etcd = &daemon{name: c.Scope + "-etcd", acct: acct, dir: dir, logPath: filepath.Join(dir, "etcd.log"), path: bin}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dbtest: %s log tail:\n%s", c.etcd.name, c.etcd.logTail())
		}
		if err := c.etcd.kill(); err != nil {
			t.Error(err)
		}
	})
	err := startOnFreePorts(c.etcd, 2, func(ports []int) error {
		// A run that failed to bind may have made a member of its ports.
		if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
			return err
		}
		c.etcdClient = ports[0]
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		c.etcd.args = []string{"--name", "e0", "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "e0=" + peerURL, "--initial-cluster-state", "new"}
		return nil
	}, "etcd to be healthy", func() error {
		body, err := c.get(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/health", c.etcdClient))
		if err == nil && !strings.Contains(string(body), `"true"`) {
			err = fmt.Errorf("health: %s", body)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newNode prepares node i: ports, directory, configuration and its
// teardown. It does not start it.
func (c *PatroniCluster) newNode(t testing.TB, acct account, bin string, i int) *PatroniNode {
	t.Helper()
	nd := &PatroniNode{name: fmt.Sprintf("n%d", i), dir: filepath.Join(c.dir, fmt.Sprintf("n%d", i)), http: c.http}
	if err := acct.mkdir(nd.dir); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(nd.dir, "patroni.yml")
	nd.patroni = &daemon{
		name: c.Scope + "-" + nd.name, acct: acct, dir: nd.dir, logPath: filepath.Join(nd.dir, "patroni.log"),
		path: bin, args: []string{confPath},
	}
	if err := c.configure(nd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if nd.admin != nil {
			nd.admin.Close()
		}
		if t.Failed() {
			t.Logf("dbtest: %s (PostgreSQL %d, REST %d) log tail:\n%s", nd.patroni.name, nd.port, nd.restPort, nd.patroni.logTail())
		}
		// Patroni first, so that it starts no new postmaster, then what it
		// started.
		err := errors.Join(nd.patroni.kill(), killUnder(nd.dir))
		if err != nil {
			t.Errorf("dbtest: tearing down %s: %v", nd.patroni.name, err)
		}
	})
	return nd
}

// configure picks free ports for node nd, writes its Patroni configuration
// and opens its admin pool.
func (c *PatroniCluster) configure(nd *PatroniNode) error {
	var err1, err2 error
	nd.port, err1 = freePort()
	nd.restPort, err2 = freePort()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	conf, err := json.MarshalIndent(c.patroniConfig(nd), "", "  ")
	if err != nil {
		return err
	}
	// JSON is YAML.
	confPath := nd.patroni.args[0]
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return err
	}
	acct := nd.patroni.acct
	if err := os.Chown(confPath, int(acct.uid), int(acct.gid)); err != nil {
		return err
	}
	if nd.admin != nil {
		nd.admin.Close()
	}
	nd.admin, err = openPostgresAdmin(nd.port)
	return err
}

// startNode starts node nd's Patroni.
func (c *PatroniCluster) startNode(nd *PatroniNode) error {
	off, err := nd.patroni.start()
	nd.startOff = off
	return err
}

// repairPorts restarts, on new ports, every node whose Patroni or
// PostgreSQL found a port it was given taken since it started: another
// process may take a free port before the daemon binds it. WaitHealthy
// calls it from the test's goroutine; once every node runs, no port
// changes.
func (c *PatroniCluster) repairPorts() error {
	for _, nd := range c.Nodes {
		if !logHas(nd.patroni.logPath, nd.startOff, "already in use") {
			continue
		}
		if err := errors.Join(nd.patroni.kill(), killUnder(nd.dir)); err != nil {
			return err
		}
		if err := c.configure(nd); err != nil {
			return err
		}
		if err := c.startNode(nd); err != nil {
			return err
		}
	}
	return nil
}

// patroniConfig returns node nd's Patroni configuration.
func (c *PatroniCluster) patroniConfig(nd *PatroniNode) map[string]any {
	type m = map[string]any
	secs := func(d time.Duration) int { return int(d / time.Second) }
	return m{
		"scope": c.Scope,
		"name":  nd.name,
		"log":   m{"level": "INFO"},
		"restapi": m{
			"listen":          fmt.Sprintf("127.0.0.1:%d", nd.restPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", nd.restPort),
		},
		"etcd3": m{"hosts": fmt.Sprintf("127.0.0.1:%d", c.etcdClient)},
		"bootstrap": m{
			"dcs": m{
				"ttl":                   secs(PatroniTTL),
				"loop_wait":             secs(PatroniLoopWait),
				"retry_timeout":         secs(PatroniRetryTimeout),
				"primary_start_timeout": 0,
				"synchronous_mode":      true,
				"failsafe_mode":         true,
				"postgresql": m{
					"use_pg_rewind": true,
					"parameters": m{
						"max_connections":              200,
						"shared_buffers":               "32MB",
						"dynamic_shared_memory_type":   "mmap",
						"fsync":                        "off",
						"synchronous_commit":           "on",
						"wal_log_hints":                "on",
						"wal_keep_size":                "256MB",
						"hot_standby":                  "on",
						"wal_receiver_status_interval": "1s",
						"wal_retrieve_retry_interval":  "200ms",
					},
				},
			},
			"initdb": []any{m{"encoding": "UTF8"}, m{"locale": "C.UTF-8"}, m{"auth": "trust"}, "no-sync"},
			"pg_hba": []string{
				"host all all 127.0.0.1/32 trust",
				"host replication all 127.0.0.1/32 trust",
			},
		},
		"postgresql": m{
			"listen":          fmt.Sprintf("127.0.0.1:%d", nd.port),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", nd.port),
			"data_dir":        filepath.Join(nd.dir, "data"),
			"bin_dir":         PGBin,
			"pgpass":          filepath.Join(nd.dir, "pgpass"),
			"authentication": m{
				"superuser":   m{"username": "postgres"},
				"replication": m{"username": "postgres"},
			},
			"parameters": m{"unix_socket_directories": nd.dir},
			// Without a fast checkpoint, pg_basebackup waits for a spread
			// one: minutes.
			"basebackup": []any{m{"checkpoint": "fast"}, "no-sync"},
		},
	}
}

// get fetches url and returns its body if the status is 200.
func (c *PatroniCluster) get(ctx context.Context, url string) ([]byte, error) {
	return httpDo(ctx, c.http, http.MethodGet, url, nil)
}

// httpDo sends a request with an optional JSON body and returns the
// response's body, or an error if the status is not 200.
func httpDo(ctx context.Context, client *http.Client, method, url string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// EtcdAddr returns the address of etcd's client port, "127.0.0.1:port".
func (c *PatroniCluster) EtcdAddr() string { return "127.0.0.1:" + strconv.Itoa(c.etcdClient) }

// Ports returns the nodes' PostgreSQL ports, in the order of Nodes.
func (c *PatroniCluster) Ports() []int {
	ports := make([]int, len(c.Nodes))
	for i, nd := range c.Nodes {
		ports[i] = nd.port
	}
	return ports
}

// Node returns the node whose PostgreSQL listens on port, or nil.
func (c *PatroniCluster) Node(port int) *PatroniNode {
	for _, nd := range c.Nodes {
		if nd.port == port {
			return nd
		}
	}
	return nil
}

// PatroniMember is one member as Patroni's GET /cluster lists it.
type PatroniMember struct {
	Name string `json:"name"`
	// Role is "leader", "sync_standby" or "replica".
	Role string `json:"role"`
	// State is "running", "streaming", "stopped", "starting"…
	State    string `json:"state"`
	Port     int    `json:"port"`
	Timeline int    `json:"timeline"`
}

// Members returns the members as the first node that answers GET /cluster
// lists them.
func (c *PatroniCluster) Members(ctx context.Context) ([]PatroniMember, error) {
	var errs []error
	for _, nd := range c.Nodes {
		body, err := c.get(ctx, nd.RESTURL()+"/cluster")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var v struct {
			Members []PatroniMember `json:"members"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("dbtest: GET /cluster: %w", err)
		}
		return v.Members, nil
	}
	return nil, errors.Join(errs...)
}

// Leader returns the node whose Patroni answers GET /primary with 200, or an
// error if none or several do.
func (c *PatroniCluster) Leader(ctx context.Context) (*PatroniNode, error) {
	var leaders []*PatroniNode
	for _, nd := range c.Nodes {
		if nd.restCheck(ctx, "/primary") == nil {
			leaders = append(leaders, nd)
		}
	}
	if len(leaders) != 1 {
		return nil, fmt.Errorf("dbtest: %d nodes claim to be the primary", len(leaders))
	}
	return leaders[0], nil
}

// WaitHealthy waits until one node leads and its PostgreSQL takes writes,
// every other node's Patroni reports a running replica whose PostgreSQL
// streams from the leader, and one of them is the synchronous standby. It
// returns the leader.
func (c *PatroniCluster) WaitHealthy(t testing.TB) *PatroniNode {
	t.Helper()
	var state string
	var leader *PatroniNode
	err := poll(haTimeout, c.Scope+" to be healthy", func() (bool, error) {
		if err := c.repairPorts(); err != nil {
			return false, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var ok bool
		leader, ok, state = c.healthy(ctx)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%v (last state: %s)", err, state)
	}
	return leader
}

// healthy reports whether the cluster is healthy, and if not, why.
func (c *PatroniCluster) healthy(ctx context.Context) (*PatroniNode, bool, string) {
	members, err := c.Members(ctx)
	if err != nil {
		return nil, false, err.Error()
	}
	var leader *PatroniNode
	sync, replicas := 0, 0
	for _, m := range members {
		switch {
		case m.Role == "leader" && m.State == "running":
			leader = c.Node(m.Port)
		case (m.Role == "sync_standby" || m.Role == "replica") && (m.State == "running" || m.State == "streaming"):
			replicas++
			if m.Role == "sync_standby" {
				sync++
			}
		}
	}
	if leader == nil || replicas != len(c.Nodes)-1 || sync != 1 {
		return nil, false, fmt.Sprintf("members %+v", members)
	}
	var writable bool
	if err := leader.admin.QueryRowContext(ctx, "SELECT NOT pg_is_in_recovery()").Scan(&writable); err != nil || !writable {
		return nil, false, fmt.Sprintf("leader %s: writable %v, %v", leader.name, writable, err)
	}
	var streaming int
	err = leader.admin.QueryRowContext(ctx,
		"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").Scan(&streaming)
	if err != nil || streaming != len(c.Nodes)-1 {
		return nil, false, fmt.Sprintf("leader %s: %d standbys streaming, %v", leader.name, streaming, err)
	}
	for _, nd := range c.Nodes {
		if nd != leader && nd.restCheck(ctx, "/replica") != nil {
			return nil, false, fmt.Sprintf("%s: GET /replica is not 200", nd.name)
		}
	}
	return leader, true, ""
}

// WaitLeader waits until a node other than old leads and its PostgreSQL
// takes writes, and returns it. It does not wait for the replicas.
func (c *PatroniCluster) WaitLeader(t testing.TB, old *PatroniNode) *PatroniNode {
	t.Helper()
	var leader *PatroniNode
	var last error
	err := poll(haTimeout, "a new leader of "+c.Scope, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		leader, last = c.Leader(ctx)
		if last != nil || leader == old {
			return false, nil
		}
		var writable bool
		last = leader.admin.QueryRowContext(ctx, "SELECT NOT pg_is_in_recovery()").Scan(&writable)
		return last == nil && writable, nil
	})
	if err != nil {
		t.Fatalf("%v (last: %v)", err, last)
	}
	return leader
}

// SyncStandby returns the node that Patroni lists as the synchronous
// standby, the one a switchover or failover may promote.
func (c *PatroniCluster) SyncStandby(t testing.TB) *PatroniNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	members, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Role == "sync_standby" {
			if nd := c.Node(m.Port); nd != nil {
				return nd
			}
		}
	}
	t.Fatalf("dbtest: %s has no synchronous standby: %+v", c.Scope, members)
	return nil
}

// Switchover asks the leader's Patroni for a planned switchover to
// candidate (POST /switchover), which returns once Patroni has promoted it
// (a few seconds).
func (c *PatroniCluster) Switchover(t testing.TB, leader, candidate *PatroniNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), haTimeout)
	defer cancel()
	client := &http.Client{Transport: c.http.Transport, Timeout: haTimeout}
	body, err := httpDo(ctx, client, http.MethodPost, leader.RESTURL()+"/switchover",
		map[string]string{"leader": leader.name, "candidate": candidate.name})
	if err != nil {
		t.Fatalf("dbtest: switchover of %s from %s to %s: %v", c.Scope, leader.name, candidate.name, err)
	}
	t.Logf("dbtest: %s: %s", c.Scope, bytes.TrimSpace(body))
}

// SetMaintenance turns Patroni's maintenance mode (pause) on or off and
// waits until every running node reports it. While it is on, Patroni
// neither promotes nor demotes anything.
func (c *PatroniCluster) SetMaintenance(t testing.TB, on bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if _, err := httpDo(ctx, c.http, http.MethodPatch, c.Nodes[0].RESTURL()+"/config", map[string]bool{"pause": on}); err != nil {
		t.Fatalf("dbtest: %s: maintenance mode %v: %v", c.Scope, on, err)
	}
	err := poll(haTimeout, fmt.Sprintf("maintenance mode %v on every node of %s", on, c.Scope), func() (bool, error) {
		for _, nd := range c.Nodes {
			body, err := c.get(ctx, nd.RESTURL()+"/patroni")
			if err != nil {
				return false, nil
			}
			var v struct {
				Pause bool `json:"pause"`
			}
			if json.Unmarshal(body, &v) != nil || v.Pause != on {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// PauseEtcd stops etcd with SIGSTOP: the DCS stops answering, and Patroni
// cannot reach it. ResumeEtcd undoes it.
func (c *PatroniCluster) PauseEtcd(t testing.TB) {
	t.Helper()
	if err := c.etcd.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// ResumeEtcd resumes a paused etcd.
func (c *PatroniCluster) ResumeEtcd(t testing.TB) {
	t.Helper()
	if err := c.etcd.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Name returns the node's Patroni name, such as "n0".
func (nd *PatroniNode) Name() string { return nd.name }

// Port returns the PostgreSQL port of the node on 127.0.0.1.
func (nd *PatroniNode) Port() int { return nd.port }

// Addr returns the PostgreSQL address, "127.0.0.1:port".
func (nd *PatroniNode) Addr() string { return "127.0.0.1:" + strconv.Itoa(nd.port) }

// RESTPort returns the port of the node's Patroni REST API on 127.0.0.1.
func (nd *PatroniNode) RESTPort() int { return nd.restPort }

// RESTURL returns the base URL of the node's Patroni REST API.
func (nd *PatroniNode) RESTURL() string { return fmt.Sprintf("http://127.0.0.1:%d", nd.restPort) }

// DSN returns a keyword/value connection string for [User] on [Database]
// at the node, as [Postgres.DSN] does.
func (nd *PatroniNode) DSN() string { return postgresDSN(nd.port) }

// Admin returns a pool of superuser connections to the node's PostgreSQL in
// the database "postgres", one connection per use, as [Server.Admin]. Do not
// close it.
func (nd *PatroniNode) Admin() *sql.DB { return nd.admin }

// restCheck returns nil if the node's Patroni answers GET path (such as
// "/primary" or "/replica") with 200.
func (nd *PatroniNode) restCheck(ctx context.Context, path string) error {
	_, err := httpDo(ctx, nd.http, http.MethodGet, nd.RESTURL()+path, nil)
	return err
}

// Postmaster returns the pid of the node's running postmaster, from its
// postmaster.pid, or 0 if it does not run.
func (nd *PatroniNode) Postmaster() int {
	b, err := os.ReadFile(filepath.Join(nd.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	if _, ok := readProc(pid); !ok {
		return 0
	}
	return pid
}

// KillPostgres simulates a crash of the node's PostgreSQL: it sends SIGKILL
// to the postmaster and every process below it and waits until they are
// gone. Patroni keeps running and reacts as it is configured to: a crashed
// leader fails over, a crashed replica is restarted.
func (nd *PatroniNode) KillPostgres(t testing.TB) {
	t.Helper()
	pid := nd.Postmaster()
	if pid == 0 {
		t.Fatalf("dbtest: %s: PostgreSQL is not running", nd.name)
	}
	if err := killOrphan(pid); err != nil {
		t.Fatalf("dbtest: killing PostgreSQL of %s: %v", nd.name, err)
	}
}

// PausePatroni stops the node's Patroni daemon with SIGSTOP; its PostgreSQL
// keeps running, but its REST API stops answering. ResumePatroni undoes it.
// A paused leader keeps its key no longer than [PatroniTTL]: turn
// maintenance mode on first unless a failover is wanted.
func (nd *PatroniNode) PausePatroni(t testing.TB) {
	t.Helper()
	if err := nd.patroni.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// ResumePatroni resumes a paused Patroni daemon.
func (nd *PatroniNode) ResumePatroni(t testing.TB) {
	t.Helper()
	if err := nd.patroni.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// LogTail returns the last few kilobytes of what the node's Patroni and
// PostgreSQL logged.
func (nd *PatroniNode) LogTail() string { return nd.patroni.logTail() }
