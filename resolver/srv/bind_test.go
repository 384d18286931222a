package srv_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qorb-go/qorb/resolver/srv"
)

// bindTTL is the TTL of every record in testdata/bind/db.test.zone.
const bindTTL = 2 * time.Second

// TestBind9 runs the resolver against a real bind9 server: nsupdate adds a
// backend and removes another, and each change must be published within
// the records' TTL plus one second. It fails when bind9 is not installed
// (scripts/setup installs it), unless -short is given.
func TestBind9(t *testing.T) {
	named, nsupdate := findTool("named"), findTool("nsupdate")
	if named == "" || nsupdate == "" {
		if testing.Short() {
			t.Skip("bind9 (named, nsupdate) is not installed; skipped in -short mode")
		}
		t.Fatal("bind9 (named, nsupdate) is not installed: run scripts/setup, or go test -short to skip")
	}
	addr := startNamed(t, named)
	const name = "_postgresql._tcp.db.test"

	rec := newRecorder()
	cfg := srv.Config{Servers: []string{addr}, Observer: srv.ObserverFunc(rec.observe)}
	r, err := srv.New(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx, rec); err != context.Canceled {
			t.Errorf("Run() = %v, want context.Canceled", err)
		}
	})
	defer wg.Wait()
	defer cancel()

	rec.waitSet(t, 10*time.Second,
		"pg1.db.test@127.0.0.1:15432 0/10", "pg2.db.test@127.0.0.2:15433 0/20", "pg2.db.test@[::1]:15433 0/20")
	_, evs := rec.snapshot()
	if ev := evs[len(evs)-1]; ev.Next < bindTTL || ev.Next > bindTTL+bindTTL/10 {
		t.Errorf("next lookup in %v, want the zone's TTL %v plus up to 10%%", ev.Next, bindTTL)
	}

	steps := []struct {
		what   string
		update string
		want   []string
	}{
		{"add pg3", "update add " + name + ". 2 IN SRV 1 5 15434 pg3.db.test.",
			[]string{"pg1.db.test@127.0.0.1:15432 0/10", "pg2.db.test@127.0.0.2:15433 0/20", "pg2.db.test@[::1]:15433 0/20", "pg3.db.test@127.0.0.3:15434 1/5"}},
		{"remove pg1", "update delete " + name + ". IN SRV 0 10 15432 pg1.db.test.",
			[]string{"pg2.db.test@127.0.0.2:15433 0/20", "pg2.db.test@[::1]:15433 0/20", "pg3.db.test@127.0.0.3:15434 1/5"}},
	}
	for _, step := range steps {
		runNSUpdate(t, nsupdate, addr, step.update)
		changed := time.Now()
		rec.waitSet(t, bindTTL+time.Second, step.want...)
		t.Logf("%s: published %v after nsupdate", step.what, time.Since(changed).Round(time.Millisecond))
	}
}

// findTool returns the path of a bind9 program, also looking in the sbin
// directories that a non-root PATH may lack, or "".
func findTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// startNamed serves testdata/bind/db.test.zone with named on a free
// loopback port, stops it when the test ends, and returns its address
// once it answers.
func startNamed(t *testing.T, named string) string {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	zone, err := os.ReadFile(filepath.Join("..", "..", "testdata", "bind", "db.test.zone"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "testdata", "bind", "named.conf.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("@DIR@", dir, "@PORT@", strconv.Itoa(port)).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(dir, "db.test.zone"), zone, 0o644); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	var log syncBuffer
	cmd := exec.Command(named, "-g", "-c", confPath)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", named, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("named log:\n%s", log.String())
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	probe, err := srv.New("_postgresql._tcp.db.test", srv.Config{Servers: []string{addr}, QueryTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := probe.Resolve(context.Background())
		if err == nil {
			return addr
		}
		select {
		case err := <-exited:
			t.Fatalf("named exited: %v\n%s", err, log.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("named on %s did not answer within 15s: %v\n%s", addr, err, log.String())
		}
	}
}

// freePort returns a loopback port that is free for UDP and TCP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			port := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

// runNSUpdate sends one dynamic update to the server at addr.
func runNSUpdate(t *testing.T, nsupdate, addr, update string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	script := fmt.Sprintf("server %s %s\nzone db.test\n%s\nsend\n", host, port, update)
	cmd := exec.Command(nsupdate)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("nsupdate %q: %v\n%s", update, err, out.String())
	}
}
