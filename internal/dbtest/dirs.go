package dbtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// dirPrefix starts the name of every base directory this package makes; the
// owning process's pid follows it.
const dirPrefix = "qorb-dbtest-"

// future is a value computed once by the first caller of get; later callers
// wait for it without holding a lock while it is computed.
type future[T any] struct {
	mu   sync.Mutex // protects started
	done chan struct{}
	val  T
	err  error

	started bool
}

func newFuture[T any]() *future[T] {
	return &future[T]{done: make(chan struct{})}
}

// get returns the value, computing it with compute if nobody has started to.
func (f *future[T]) get(compute func() (T, error)) (T, error) {
	f.mu.Lock()
	first := !f.started
	f.started = true
	f.mu.Unlock()
	if first {
		f.val, f.err = compute()
		close(f.done)
	}
	<-f.done
	return f.val, f.err
}

// peek returns the value if it has been computed.
func (f *future[T]) peek() (T, bool) {
	select {
	case <-f.done:
		return f.val, f.err == nil
	default:
		var zero T
		return zero, false
	}
}

var base = newFuture[string]()

// baseDir returns this process's directory for templates and servers,
// creating it (and removing those of processes that are gone) on first use.
func baseDir() (string, error) {
	return base.get(func() (string, error) {
		root := "/dev/shm"
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			root = os.TempDir()
		}
		sweep(root)
		dir, err := os.MkdirTemp(root, fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
		if err != nil {
			return "", err
		}
		// The postgres and mysql users must be able to reach their directories.
		if err := os.Chmod(dir, 0o755); err != nil {
			return "", err
		}
		return dir, nil
	})
}

// sweep removes the base directories of processes that no longer exist.
// It is best effort: a failure leaves the directory for a later run.
func sweep(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), dirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			// Servers that a daemon left to init (Patroni's postmasters) do
			// not die with the process that started the daemon.
			killUnder(filepath.Join(root, e.Name()))
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// Main runs the tests of m, removes the server templates this package made,
// and exits with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
//
// Without it, the templates stay under /dev/shm until the next test binary
// that uses this package starts.
func Main(m *testing.M) {
	code := m.Run()
	if dir, ok := base.peek(); ok {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// account is a system user that a server runs as.
type account struct {
	name     string
	uid, gid uint32
}

func lookupAccount(name string) (account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("dbtest: system user %q: %w (run scripts/setup)", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return account{}, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return account{}, err
	}
	return account{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// sysProcAttr returns the process attributes that run a command as a, in its
// own process group, killed if the thread that started it dies.
func (a account) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: a.uid, Gid: a.gid},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
}

// mkdir makes dir, owned by a, with mode 0700.
func (a account) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, int(a.uid), int(a.gid))
}

// run runs name with args as a and returns an error holding its output if it
// fails.
func (a account) run(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = a.sysProcAttr()
	cmd.Dir = "/"
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out))
	}
	return string(out), nil
}

// copyTree copies src to dst, keeping owners and modes.
func copyTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp -a %s %s: %w: %s", src, dst, err, out)
	}
	return nil
}

var ports struct {
	mu   sync.Mutex // protects used
	used map[int]bool
}

// freePort returns a port of 127.0.0.1 that nothing listens on now and that
// this process has not handed out before. Another process may still take it
// before the server binds it; callers retry on a collision.
func freePort() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ports.mu.Lock()
		taken := ports.used[port]
		if !taken {
			if ports.used == nil {
				ports.used = make(map[int]bool)
			}
			ports.used[port] = true
		}
		ports.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("dbtest: no free port found")
}

// tail returns the last lines of a log, at most about 3 KB.
func tail(b []byte) string {
	const limit = 3000
	if len(b) > limit {
		b = b[len(b)-limit:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}

// instanceDir makes the directory of a new server or cluster, owned by the
// system user that runs it, under the base directory: its name is prefix
// followed by a serial number, which it also returns.
func instanceDir(t testing.TB, user, prefix string) (acct account, id int, name, dir string) {
	t.Helper()
	acct, err := lookupAccount(user)
	if err != nil {
		t.Fatal(err)
	}
	base, err := baseDir()
	if err != nil {
		t.Fatal(err)
	}
	id = int(serial.Add(1))
	name = fmt.Sprintf("%s%d", prefix, id)
	dir = filepath.Join(base, name)
	if err := acct.mkdir(dir); err != nil {
		t.Fatal(err)
	}
	return acct, id, name, dir
}
