package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Deadlines. They are generous because two shared cores may be busy with
// other test binaries; a healthy server needs a small fraction of them.
const (
	startTimeout = 60 * time.Second // launch until the server answers, crash recovery included
	stopTimeout  = 60 * time.Second // clean shutdown
	killTimeout  = 10 * time.Second // SIGKILL or SIGSTOP until every process of the server obeys
	queryTimeout = 30 * time.Second // one admin statement
	waitTimeout  = 30 * time.Second // replication catching up, a standby following
	pollInterval = 20 * time.Millisecond
)

// serial numbers servers, for names and MariaDB server ids.
var serial atomic.Int64

// Server is one database server process, PostgreSQL or MariaDB, listening on
// its own port of 127.0.0.1 with its own data directory. It is embedded in
// [Postgres] and [MariaDB], which add what differs between the engines.
//
// Start, Stop, Restart, Kill, Pause and Resume change the process and must
// not be called concurrently with each other.
type Server struct {
	name    string
	dir     string // instance directory: data, log, sockets
	port    int    // set before the first start, never changed after
	acct    account
	logPath string
	admin   *sql.DB // superuser pool; connects per use, see openAdmin

	// command returns the program and arguments that run the server.
	command func() (string, []string)
	// stopSignal asks the server's main process for a clean shutdown.
	stopSignal syscall.Signal
	// openAdmin opens the admin pool for a port.
	openAdmin func(port int) (*sql.DB, error)
	// dataDirQuery returns the data directory of the server that answers,
	// which tells ours apart from another that has taken its port.
	dataDirQuery string

	mu     sync.Mutex // protects the fields below
	proc   *process   // nil when not running
	paused bool
}

// newServer prepares a server in dir (which holds its data already) and
// registers its teardown with t. It does not start it.
func newServer(t testing.TB, name, dir string, acct account) *Server {
	t.Helper()
	s := &Server{name: name, dir: dir, acct: acct, logPath: filepath.Join(dir, "server.log")}
	t.Cleanup(func() { s.teardown(t) })
	return s
}

// teardown kills the server, waits for its processes and removes its
// directory. It runs as a t.Cleanup.
func (s *Server) teardown(t testing.TB) {
	if s.admin != nil {
		s.admin.Close()
	}
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if t.Failed() {
		t.Logf("dbtest: %s (port %d) log tail:\n%s", s.name, s.port, s.LogTail())
	}
	if p != nil {
		if err := p.kill(); err != nil {
			t.Errorf("dbtest: tearing down %s: %v", s.name, err)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Errorf("dbtest: tearing down %s: %v", s.name, err)
	}
}

// firstStart starts the server on a port from pick, trying other ports while
// another process has taken the one picked.
func (s *Server) firstStart(pick func() (int, error)) error {
	var err error
	for range 5 {
		s.port, err = pick()
		if err != nil {
			return err
		}
		if s.admin != nil {
			s.admin.Close()
		}
		s.admin, err = s.openAdmin(s.port)
		if err != nil {
			return err
		}
		var off int64
		off, err = s.start()
		if err == nil || !strings.Contains(s.logSince(off), "already in use") {
			return err
		}
	}
	return err
}

// start launches the server and waits until it answers. It returns the size
// of the log before the launch, so that a caller can read what this run
// wrote.
func (s *Server) start() (int64, error) {
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		return 0, fmt.Errorf("dbtest: %s is already running", s.name)
	}
	path, args := s.command()
	p, off, err := launch(s.acct, s.dir, s.logPath, fmt.Sprintf("%s: starting on port %d", s.name, s.port), path, args)
	if err != nil {
		return off, fmt.Errorf("dbtest: starting %s: %w", s.name, err)
	}
	if err := s.waitReady(p); err != nil {
		kerr := p.kill()
		return off, fmt.Errorf("dbtest: %s on port %d did not start: %w\n--- log:\n%s",
			s.name, s.port, errors.Join(err, kerr), tail([]byte(s.logSince(off))))
	}
	s.mu.Lock()
	s.proc, s.paused = p, false
	s.mu.Unlock()
	return off, nil
}

// waitReady polls the server until it answers on its port, it exits or the
// start deadline passes. Another server that answers on the port (one that
// took it first) does not count: this one will fail to bind it and exit.
func (s *Server) waitReady(p *process) error {
	want := filepath.Join(s.dir, "data")
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		got, err := s.probe(p)
		if err == nil && filepath.Clean(got) == want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("port %d is answered by the server of %s", s.port, got)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %v: %w", startTimeout, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		case <-tick.C:
		}
	}
}

// probe asks the server that answers on the port for its data directory. It
// gives up when the process exits: something else may hold the port and
// accept connections without ever answering.
func (s *Server) probe(p *process) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	})
	var dir string
	err := s.admin.QueryRowContext(ctx, s.dataDirQuery).Scan(&dir)
	cancel()
	wg.Wait()
	return dir, err
}

// running returns the current process, failing the test if there is none.
func (s *Server) running(t testing.TB) *process {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		t.Fatalf("dbtest: %s is not running", s.name)
	}
	return p
}

// Name returns the server's name, such as "pg3" or "mariadb2", used in logs
// and errors.
func (s *Server) Name() string { return s.name }

// Port returns the server's TCP port on 127.0.0.1. It stays the same across
// restarts.
func (s *Server) Port() int { return s.port }

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Dir returns the server's directory, which holds its data directory "data",
// its log "server.log" and, for MariaDB, its socket and pid file.
func (s *Server) Dir() string { return s.dir }

// PID returns the process id of the server's main process (the postmaster,
// or mariadbd), which also leads its process group, or 0 when the server is
// not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// Running reports whether the server has been started and not stopped or
// killed since. A paused server is running.
func (s *Server) Running() bool { return s.PID() != 0 }

// LogTail returns the last few kilobytes of the server's log, which holds
// what it wrote in every run.
func (s *Server) LogTail() string { return s.logSince(0) }

// logSince returns the tail of what the log holds after offset off.
func (s *Server) logSince(off int64) string { return fileTail(s.logPath, off) }

// Start starts a stopped or killed server again, on the same port with the
// same data, and waits until it answers. It fails the test if the server is
// running, or does not answer within a minute (the error holds its log).
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if _, err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Stop shuts the server down cleanly (PostgreSQL's fast shutdown, or
// mariadbd's normal one) and waits until all its processes are gone. A
// paused server is resumed first.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	p := s.running(t)
	s.mu.Lock()
	paused := s.paused
	s.mu.Unlock()
	if paused {
		p.signal(syscall.SIGCONT)
	}
	err := p.stop(s.stopSignal, stopTimeout)
	if err != nil {
		err = errors.Join(err, p.kill())
	}
	s.mu.Lock()
	s.proc = nil
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("dbtest: stopping %s: %v\n--- log:\n%s", s.name, err, s.LogTail())
	}
}

// Kill simulates a crash: it sends SIGKILL to the server's main process and
// all its descendants and waits until they are gone. Start brings it back, with crash
// recovery.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	p := s.running(t)
	err := p.kill()
	s.mu.Lock()
	s.proc = nil
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("dbtest: killing %s: %v", s.name, err)
	}
}

// Restart stops the server cleanly and starts it again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// Pause hangs the server: it sends SIGSTOP to the server's main process and
// all its descendants (for PostgreSQL, the postmaster and every backend and
// auxiliary process) and waits until all are stopped. The kernel still accepts TCP connections for it, so
// clients connect and then wait for an answer. Resume undoes it.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	p := s.running(t)
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
	if err := p.pause(); err != nil {
		t.Fatalf("dbtest: pausing %s: %v", s.name, err)
	}
}

// Resume sends SIGCONT to every process of a paused server; it then answers
// what it was sent while paused.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	p := s.running(t)
	if err := p.signal(syscall.SIGCONT); err != nil {
		t.Fatalf("dbtest: resuming %s: %v", s.name, err)
	}
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
}

// Admin returns a pool of superuser connections to the server, for what the
// helpers here do not cover. Each use opens a new connection, so the pool
// keeps working across restarts and holds no session while idle. Do not
// close it; the server's teardown does.
func (s *Server) Admin() *sql.DB { return s.admin }

// Exec runs a statement on the server as the superuser, failing the test on
// error. PostgreSQL statements run in the database "postgres"; MariaDB
// statements run with no default database.
func (s *Server) Exec(t testing.TB, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if _, err := s.admin.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("dbtest: %s: %s: %v", s.name, query, err)
	}
}

// queryRow runs a query as the superuser and scans its one row into dest.
func (s *Server) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if err := s.admin.QueryRowContext(ctx, query, args...).Scan(dest...); err != nil {
		return fmt.Errorf("dbtest: %s: %s: %w", s.name, query, err)
	}
	return nil
}

// mustQueryRow is queryRow that fails the test on error.
func (s *Server) mustQueryRow(t testing.TB, query string, args []any, dest ...any) {
	t.Helper()
	if err := s.queryRow(context.Background(), query, args, dest...); err != nil {
		t.Fatal(err)
	}
}

// poll calls check until it reports done, it fails, or d passes; what says
// what is awaited, for the error.
func poll(d time.Duration, what string, check func() (bool, error)) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dbtest: timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}
