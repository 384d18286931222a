package qorb

import (
	"database/sql/driver"
	"slices"
	"sync"
	"sync/atomic"
)

// DefaultStmtCache is how many statements that no open [sql.Stmt] uses a
// connection keeps prepared, unless Settings.StmtCache says otherwise.
const DefaultStmtCache = 16

// stmtRefs counts, per query text, the statements database/sql holds
// open through the connector's handles. A statement prepared on a
// connection stays there while some open [sql.Stmt] uses its text; once
// none does, it is only cached, and each connection keeps at most the
// cache's size of those, the most recently used.
type stmtRefs struct {
	mu   sync.Mutex
	open map[string]int // open statements per query text
	// released counts the times a query text lost its last open
	// statement: a connection that last trimmed its cache at a lower
	// count may hold statements to release.
	released atomic.Uint64
}

// hold counts an open statement of query.
func (r *stmtRefs) hold(query string) {
	r.mu.Lock()
	if r.open == nil {
		r.open = make(map[string]int)
	}
	r.open[query]++
	r.mu.Unlock()
}

// release uncounts an open statement of query.
func (r *stmtRefs) release(query string) {
	r.mu.Lock()
	if n := r.open[query] - 1; n > 0 {
		r.open[query] = n
	} else {
		delete(r.open, query)
		r.released.Add(1)
	}
	r.mu.Unlock()
}

// unused returns the texts of pc's statements no open statement uses.
func (r *stmtRefs) unused(pc *physConn) []string {
	var qs []string
	r.mu.Lock()
	for q := range pc.stmts {
		if r.open[q] == 0 {
			qs = append(qs, q)
		}
	}
	r.mu.Unlock()
	return qs
}

// cachedStmt is a statement prepared on a physical connection.
type cachedStmt struct {
	ds   driver.Stmt
	used uint64 // the connection's use count when it was last used
}

// cached returns the statement prepared for query on pc, if there is one.
// The claimer of pc calls it, as every method of pc's cache.
func (pc *physConn) cached(query string) (driver.Stmt, bool) {
	e, ok := pc.stmts[query]
	if !ok {
		return nil, false
	}
	pc.uses++
	e.used = pc.uses
	return e.ds, true
}

// cache keeps ds, just prepared for query on pc.
func (pc *physConn) cache(query string, ds driver.Stmt) {
	if pc.stmts == nil {
		pc.stmts = make(map[string]*cachedStmt)
	}
	pc.uses++
	pc.stmts[query] = &cachedStmt{ds: ds, used: pc.uses}
}

// evict closes the statement prepared for query on pc, if there is one:
// the driver deallocates it on the server.
func (pc *physConn) evict(query string) {
	if e, ok := pc.stmts[query]; ok {
		delete(pc.stmts, query)
		e.ds.Close()
	}
}

// closeStmts closes every statement prepared on pc.
func (pc *physConn) closeStmts() {
	for q := range pc.stmts {
		pc.evict(q)
	}
}

// mayTrim reports, cheaply, whether pc may hold more unused statements
// than keep: it holds more statements than that, and some query text has
// lost its last open statement since pc was last trimmed.
func (pc *physConn) mayTrim(r *stmtRefs, keep int) bool {
	return len(pc.stmts) > keep && pc.trimmed != r.released.Load()
}

// trim closes pc's least recently used statements that no open statement
// uses, all but keep of them.
func (pc *physConn) trim(r *stmtRefs, keep int) {
	pc.trimmed = r.released.Load()
	if len(pc.stmts) <= keep {
		return
	}
	qs := r.unused(pc)
	if len(qs) <= keep {
		return
	}
	slices.SortFunc(qs, func(a, b string) int {
		return int(int64(pc.stmts[a].used - pc.stmts[b].used))
	})
	for _, q := range qs[:len(qs)-keep] {
		pc.evict(q)
	}
}
