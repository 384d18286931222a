package dbtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one run of a server's main process: the postmaster, or
// mariadbd. PostgreSQL's children make themselves process group leaders
// (setsid), so a signal to the main process's group would miss them: the
// methods here find the descendants in /proc instead.
type process struct {
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // from Wait; read only after done is closed
}

// procInfo is what /proc/PID/stat says of a process.
type procInfo struct {
	pid, ppid int
	state     byte   // R, S, D, T, t, Z, X…
	start     uint64 // start time since boot, which tells a reused pid apart
}

// readProc reads /proc/PID/stat.
func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procInfo{}, false
	}
	// pid (comm) state ppid pgrp … starttime is field 22; comm may hold
	// spaces and parentheses, so count from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procInfo{}, false
	}
	return procInfo{pid: pid, ppid: ppid, state: f[0][0], start: start}, true
}

// live reports whether the process still runs: it exists, is the same
// process (not a reused pid), and is not a zombie.
func (pi procInfo) live() (procInfo, bool) {
	now, ok := readProc(pi.pid)
	if !ok || now.start != pi.start || now.state == 'Z' || now.state == 'X' {
		return now, false
	}
	return now, true
}

// descendants returns the processes below p's main process.
func (p *process) descendants() []procInfo {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := make(map[int][]procInfo)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pi, ok := readProc(pid); ok {
			children[pi.ppid] = append(children[pi.ppid], pi)
		}
	}
	var out []procInfo
	queue := []int{p.pid}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// freeze stops the main process, so that it forks no new children while its
// descendants are signalled, and returns them.
func (p *process) freeze() ([]procInfo, error) {
	if err := syscall.Kill(p.pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, nil
		}
		return nil, fmt.Errorf("stop process %d: %w", p.pid, err)
	}
	main, ok := readProc(p.pid)
	err := waitFor(killTimeout, func() bool {
		now, live := main.live()
		return !ok || !live || now.state == 'T'
	})
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", p.pid, err)
	}
	return p.descendants(), nil
}

// signal sends sig to the main process and all its descendants.
func (p *process) signal(sig syscall.Signal) error {
	for _, d := range p.descendants() {
		syscall.Kill(d.pid, sig) // it may be gone already
	}
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to process %d: %w", sig, p.pid, err)
	}
	return nil
}

// kill sends SIGKILL to the main process and all its descendants and waits
// until all are gone.
func (p *process) kill() error {
	members, err := p.freeze()
	if err != nil {
		return err
	}
	for _, m := range members {
		syscall.Kill(m.pid, syscall.SIGKILL)
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process %d: %w", p.pid, err)
	}
	return p.wait(members, killTimeout)
}

// stop sends sig to the main process alone, which shuts the server down, and
// waits at most d until it and its descendants are gone.
func (p *process) stop(sig syscall.Signal, d time.Duration) error {
	members := p.descendants()
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to process %d: %w", sig, p.pid, err)
	}
	return p.wait(members, d)
}

// pause stops the main process and all its descendants and waits until all
// are stopped.
func (p *process) pause() error {
	members, err := p.freeze()
	if err != nil {
		return err
	}
	for _, m := range members {
		syscall.Kill(m.pid, syscall.SIGSTOP)
	}
	return waitFor(killTimeout, func() bool {
		for _, m := range members {
			if now, live := m.live(); live && now.state != 'T' {
				return false
			}
		}
		return true
	})
}

// wait waits at most d until the main process has exited and been reaped and
// every one of members is gone. The members cannot be reaped by us (they
// belong to init once the main process is gone), so a zombie counts as gone.
func (p *process) wait(members []procInfo, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		return fmt.Errorf("process %d still running after %v", p.pid, d)
	}
	err := waitFor(d, func() bool {
		for _, m := range members {
			if _, live := m.live(); live {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("children of process %d: %w", p.pid, err)
	}
	return nil
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval / 4)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("still running after %v", d)
		}
		<-tick.C
	}
	return nil
}

// launch starts path with args as acct in dir, with its output appended to
// the log at logPath after a line that says what starts, and returns the
// running process and the size of the log before the launch, so that a caller
// can read what this run wrote. The process gets its own process group and
// SIGKILL if the thread that started it dies; a goroutine waits for it and
// closes done when it has exited, so every caller that drops a process must
// make it exit.
func launch(acct account, dir, logPath, what, path string, args []string) (*process, int64, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	off, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "==== dbtest %s %s: %s %s\n",
		time.Now().Format(time.RFC3339Nano), what, path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = acct.sysProcAttr()
	err = cmd.Start()
	logf.Close() // the process has its own descriptor
	if err != nil {
		return nil, off, err
	}
	p := &process{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, off, nil
}

// fileTail returns the last few kilobytes of what the file at path holds
// after offset off.
func fileTail(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const limit = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-off > limit {
		off = fi.Size() - limit
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, limit))
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	return tail(b)
}

// killOrphan sends SIGKILL to pid, a process this one did not start (such as
// a postmaster that Patroni forked off and left to init), and to all its
// descendants, and waits until they are gone. A process that is gone already
// is left alone.
func killOrphan(pid int) error {
	pi, ok := readProc(pid)
	if !ok {
		return nil
	}
	p := &process{pid: pid}
	members, err := p.freeze()
	if err != nil {
		return err
	}
	members = append(members, pi)
	for _, m := range members {
		syscall.Kill(m.pid, syscall.SIGKILL)
	}
	return waitFor(killTimeout, func() bool {
		for _, m := range members {
			if _, live := m.live(); live {
				return false
			}
		}
		return true
	})
}

// killUnder sends SIGKILL to every process whose command line names a path
// under dir, and to its descendants. It finds what a daemon started and left
// to init (Patroni's postmasters), once the daemon is gone.
func killUnder(dir string) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	prefix := []byte(filepath.Clean(dir) + "/")
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, prefix) {
			continue
		}
		if err := killOrphan(pid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
