package dbtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// daemon is a helper program that a test runs in the background (etcd,
// Patroni, HAProxy): one process, run as acct in dir, with its output
// appended to a log. Its owner kills it in the teardown of the test that
// started it.
type daemon struct {
	name    string
	acct    account
	dir     string
	logPath string
	path    string
	args    []string

	mu   sync.Mutex // protects proc
	proc *process   // nil when not running
}

// start launches the daemon and returns the size of its log before the
// launch.
func (d *daemon) start() (int64, error) {
	p, off, err := launch(d.acct, d.dir, d.logPath, d.name+": starting", d.path, d.args)
	if err != nil {
		return off, fmt.Errorf("dbtest: starting %s: %w", d.name, err)
	}
	d.mu.Lock()
	d.proc = p
	d.mu.Unlock()
	return off, nil
}

// await polls ready until it returns nil, the daemon exits, or timeout
// passes. The error holds what the daemon logged since off.
func (d *daemon) await(off int64, timeout time.Duration, what string, ready func() error) error {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("dbtest: %s is not running", d.name)
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dbtest: %s: timed out after %v waiting for %s: %w\n--- log:\n%s",
				d.name, timeout, what, err, fileTail(d.logPath, off))
		}
		select {
		case <-p.done:
			return fmt.Errorf("dbtest: %s exited while waiting for %s: %v\n--- log:\n%s",
				d.name, what, p.err, fileTail(d.logPath, off))
		case <-tick.C:
		}
	}
}

// signal sends sig to the daemon's process alone.
func (d *daemon) signal(sig syscall.Signal) error {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("dbtest: %s is not running", d.name)
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("dbtest: signal %v to %s: %w", sig, d.name, err)
	}
	return nil
}

// kill sends SIGKILL to the daemon and its descendants and waits until they
// are gone. A daemon that is not running is left alone.
func (d *daemon) kill() error {
	d.mu.Lock()
	p := d.proc
	d.proc = nil
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	// A stopped process still dies of SIGKILL; SIGCONT lets freeze see it
	// stop and its descendants be found.
	syscall.Kill(p.pid, syscall.SIGCONT)
	if err := p.kill(); err != nil {
		return fmt.Errorf("dbtest: killing %s: %w", d.name, err)
	}
	return nil
}

// logTail returns the last few kilobytes of the daemon's log.
func (d *daemon) logTail() string { return fileTail(d.logPath, 0) }

// lookPrograms returns the paths of the named programs, searched on PATH and
// in /usr/sbin, or an error that names every one missing.
func lookPrograms(names ...string) (map[string]string, error) {
	paths := make(map[string]string)
	var missing []error
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			if p2, err2 := exec.LookPath("/usr/sbin/" + n); err2 == nil {
				p, err = p2, nil
			}
		}
		if err != nil {
			missing = append(missing, fmt.Errorf("%s not found", n))
			continue
		}
		paths[n] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("dbtest: %w (scripts/setup installs the Debian packages patroni, etcd-server and haproxy)", errors.Join(missing...))
	}
	return paths, nil
}

// startOnFreePorts starts d on n free ports, which configure puts into its
// arguments, and waits until ready returns nil; while d exits because a
// port was taken before it bound it, it tries again on other ports (up to
// five times).
func startOnFreePorts(d *daemon, n int, configure func(ports []int) error, what string, ready func() error) error {
	var err error
	for range 5 {
		ports := make([]int, n)
		for i := range ports {
			if ports[i], err = freePort(); err != nil {
				return err
			}
		}
		if err = configure(ports); err != nil {
			return err
		}
		var off int64
		if off, err = d.start(); err != nil {
			return err
		}
		if err = d.await(off, startTimeout, what, ready); err == nil {
			return nil
		}
		if !logHas(d.logPath, off, "already in use") {
			return err
		}
		if kerr := d.kill(); kerr != nil {
			return errors.Join(err, kerr)
		}
	}
	return err
}

// logHas reports whether the log at path holds s after offset off.
func logHas(path string, off int64, s string) bool {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return false
	}
	return bytes.Contains(bytes.ToLower(b[off:]), bytes.ToLower([]byte(s)))
}
