package hastack

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// A System is one way for an application to reach the cluster: a database
// for replica reads and one for writes (the same *sql.DB for qorb, which
// routes by role; HAProxy's two ports otherwise), and what an operation of
// each kind adds to its context (qorb.WithRole, or nothing).
type System struct {
	Name     string
	Reads    *sql.DB
	Writes   *sql.DB
	ReadCtx  func(context.Context) context.Context
	WriteCtx func(context.Context) context.Context
}

// LoadConfig sets the load that every system runs.
type LoadConfig struct {
	// Readers and Writers are the goroutines of each system that read and
	// write.
	Readers, Writers int
	// ReadPause and WritePause are how long a goroutine waits after each
	// operation, so that three systems' load leaves the cluster's Patroni
	// daemons some CPU.
	ReadPause, WritePause time.Duration
	// OpTimeout bounds each operation (its context's deadline).
	OpTimeout time.Duration
}

// DefaultLoad is the load of the tests and the comparison: 32 readers and 8
// writers per system, each operation bounded by 2 s.
var DefaultLoad = LoadConfig{
	Readers: 32, Writers: 8,
	ReadPause: 40 * time.Millisecond, WritePause: 20 * time.Millisecond,
	OpTimeout: 2 * time.Second,
}

// Op is one operation of a load run.
type Op struct {
	Start, End time.Time
	// Port is the PostgreSQL port of the server that ran the operation,
	// as inet_server_port() gives it; 0 if it failed.
	Port int
	// InRecovery is what pg_is_in_recovery() said inside a read.
	InRecovery bool
	// ID is the row a write inserted.
	ID  int64
	Err error
}

// record holds the operations of one system.
type record struct {
	mu     sync.Mutex // protects reads and writes
	reads  []Op
	writes []Op
}

// Load is the load running against several systems; [StartLoad] starts it
// and Stop stops it.
type Load struct {
	systems []*System
	records []*record
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// The queries of the load. A write records which system made it, so a lost
// row can be traced.
const (
	createTable = "CREATE TABLE IF NOT EXISTS hastack_writes (id BIGINT PRIMARY KEY, system TEXT NOT NULL, port INT NOT NULL)"
	writeQuery  = "INSERT INTO hastack_writes (id, system, port) VALUES ($1, $2, inet_server_port()) RETURNING port"
	readQuery   = "SELECT inet_server_port(), pg_is_in_recovery()"
)

// StartLoad starts cfg's readers and writers on every system. Row ids come
// from ids, so that they are unique across systems and runs.
func StartLoad(systems []*System, cfg LoadConfig, ids *atomic.Int64) *Load {
	l := &Load{systems: systems, stop: make(chan struct{})}
	for _, s := range systems {
		rec := &record{}
		l.records = append(l.records, rec)
		for range cfg.Readers {
			l.wg.Go(func() { l.run(cfg.ReadPause, func() { rec.add(false, read(s, cfg.OpTimeout)) }) })
		}
		for range cfg.Writers {
			l.wg.Go(func() { l.run(cfg.WritePause, func() { rec.add(true, write(s, cfg.OpTimeout, ids.Add(1))) }) })
		}
	}
	return l
}

// run calls op, then waits pause, until the load stops.
func (l *Load) run(pause time.Duration, op func()) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-timer.C:
		}
		op()
		timer.Reset(pause)
	}
}

func (r *record) add(isWrite bool, op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if isWrite {
		r.writes = append(r.writes, op)
	} else {
		r.reads = append(r.reads, op)
	}
}

// read runs one replica read on s.
func read(s *System, timeout time.Duration) Op {
	op := Op{Start: time.Now()}
	ctx, cancel := context.WithTimeout(s.ReadCtx(context.Background()), timeout)
	defer cancel()
	op.Err = s.Reads.QueryRowContext(ctx, readQuery).Scan(&op.Port, &op.InRecovery)
	op.End = time.Now()
	return op
}

// write inserts row id through s.
func write(s *System, timeout time.Duration, id int64) Op {
	op := Op{Start: time.Now(), ID: id}
	ctx, cancel := context.WithTimeout(s.WriteCtx(context.Background()), timeout)
	defer cancel()
	op.Err = s.Writes.QueryRowContext(ctx, writeQuery, id, s.Name).Scan(&op.Port)
	op.End = time.Now()
	return op
}

// Stop stops the load and waits for the operations in flight.
func (l *Load) Stop() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
	})
}

// Ops returns copies of system i's reads and writes so far.
func (l *Load) Ops(i int) (reads, writes []Op) {
	r := l.records[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.reads...), append([]Op(nil), r.writes...)
}

// Wrote reports whether every system has a write acknowledged by port that
// ended after since, and names those that have not.
func (l *Load) Wrote(port int, since time.Time) (bool, []string) {
	var missing []string
	for i, s := range l.systems {
		r := l.records[i]
		r.mu.Lock()
		found := false
		for j := len(r.writes) - 1; j >= 0 && r.writes[j].End.After(since); j-- {
			if w := r.writes[j]; w.Err == nil && w.Port == port {
				found = true
				break
			}
		}
		r.mu.Unlock()
		if !found {
			missing = append(missing, s.Name)
		}
	}
	return len(missing) == 0, missing
}

// Served reports whether every system has a successful read and a
// successful write that ended after since.
func (l *Load) Served(since time.Time) bool {
	for i := range l.systems {
		reads, writes := l.Ops(i)
		ok := func(ops []Op) bool {
			for j := len(ops) - 1; j >= 0 && ops[j].End.After(since); j-- {
				if ops[j].Err == nil {
					return true
				}
			}
			return false
		}
		if !ok(reads) || !ok(writes) {
			return false
		}
	}
	return true
}
