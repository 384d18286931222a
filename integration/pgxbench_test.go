package integration

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qorb-go/qorb/dialects/pgdialect/qorbpgx"
	"github.com/qorb-go/qorb/internal/dbtest"
)

// pgxAPI is what the benchmark runs through either pool.
type pgxAPI interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

var (
	_ pgxAPI = (*pgxpool.Pool)(nil)
	_ pgxAPI = (*qorbpgx.Pool)(nil)
)

// pgxOps are the operations of BenchmarkPgxVersusPgxpool.
var pgxOps = []struct {
	name string
	run  func(ctx context.Context, p pgxAPI) error
}{
	{"query=select1", func(ctx context.Context, p pgxAPI) error {
		var n int
		return p.QueryRow(ctx, "SELECT 1").Scan(&n)
	}},
	{"query=prepared", func(ctx context.Context, p pgxAPI) error {
		// Prepared on every connection by AfterConnect.
		var n int
		return p.QueryRow(ctx, "bench_stmt", 7).Scan(&n)
	}},
	{"query=rows100", func(ctx context.Context, p pgxAPI) error {
		rows, err := p.Query(ctx, "SELECT g FROM generate_series(1, 100) g")
		if err != nil {
			return err
		}
		sum := 0
		for rows.Next() {
			var g int
			if err := rows.Scan(&g); err != nil {
				return err
			}
			sum += g
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if sum != 5050 {
			return fmt.Errorf("sum %d, want 5050", sum)
		}
		return nil
	}},
	{"query=none", func(ctx context.Context, p pgxAPI) error {
		// Acquire and release alone: the pools' own cost.
		switch p := p.(type) {
		case *pgxpool.Pool:
			c, err := p.Acquire(ctx)
			if err != nil {
				return err
			}
			c.Release()
		case *qorbpgx.Pool:
			c, err := p.Acquire(ctx)
			if err != nil {
				return err
			}
			c.Release()
		}
		return nil
	}},
	{"query=tx", func(ctx context.Context, p pgxAPI) error {
		tx, err := p.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var n int
		if err := tx.QueryRow(ctx, "SELECT $1::int", 7).Scan(&n); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}},
}

// BenchmarkPgxVersusPgxpool runs SELECT 1, a prepared statement, a
// 100-row result, an acquire and release with no query (the pools' own
// cost) and a small transaction through qorbpgx's Pool and
// through pgxpool, both with 16 connections to the same PostgreSQL
// server, at 1, 16 and 64 goroutines. Each goroutine alternates one
// operation through each pool, each pool going first every other time,
// so both see the same server and machine load; it reports the throughput of qorbpgx as a fraction of pgxpool's
// ("ratio", above 1 when qorbpgx is faster), each side's time per
// operation, and each side's allocations and bytes per operation,
// counted over operations run one at a time after the timed part.
func BenchmarkPgxVersusPgxpool(b *testing.B) {
	const conns = 16
	pg := dbtest.StartPostgres(b, 1)[0]
	prepare := func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Prepare(ctx, "bench_stmt", "SELECT $1::int")
		return err
	}
	ctx := context.Background()

	pcfg, err := pgxpool.ParseConfig(pg.DSN())
	if err != nil {
		b.Fatal(err)
	}
	pcfg.MaxConns, pcfg.MinConns = conns, conns
	pcfg.AfterConnect = prepare
	native, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer native.Close()

	qcfg, err := qorbpgx.ParseConfig(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&pool_max_conns=%d&pool_spares=%d",
		dbtest.User, dbtest.Password, pg.Addr(), dbtest.Database, conns, conns))
	if err != nil {
		b.Fatal(err)
	}
	qcfg.AfterConnect = prepare
	viaQorb, err := qorbpgx.NewWithConfig(ctx, qcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer viaQorb.Close()

	for _, o := range pgxOps {
		for _, g := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", o.name, g), func(b *testing.B) {
				// Warm both pools to their full size.
				var warm sync.WaitGroup
				for range conns {
					warm.Go(func() {
						o.run(ctx, native)
						o.run(ctx, viaQorb)
					})
				}
				warm.Wait()

				var (
					mu                   sync.Mutex
					qorbTime, nativeTime time.Duration
					wg                   sync.WaitGroup
				)
				b.ResetTimer()
				for i := range g {
					n := b.N / g
					if i < b.N%g {
						n++
					}
					wg.Go(func() {
						var q, d time.Duration
						for j := range n {
							// Each goes first every other time, so that
							// neither gains from the order.
							var first, second pgxAPI = viaQorb, native
							ft, st := &q, &d
							if (i+j)%2 == 1 {
								first, second, ft, st = native, viaQorb, &d, &q
							}
							t0 := time.Now()
							if err := o.run(ctx, first); err != nil {
								b.Error(err)
								return
							}
							t1 := time.Now()
							if err := o.run(ctx, second); err != nil {
								b.Error(err)
								return
							}
							*st += time.Since(t1)
							*ft += t1.Sub(t0)
						}
						mu.Lock()
						qorbTime += q
						nativeTime += d
						mu.Unlock()
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(nativeTime)/float64(qorbTime), "ratio")
				b.ReportMetric(float64(qorbTime.Nanoseconds())/float64(b.N), "qorb-ns/op")
				b.ReportMetric(float64(nativeTime.Nanoseconds())/float64(b.N), "pgxpool-ns/op")
				qa, qb := pgxAllocs(b, ctx, viaQorb, o.run)
				na, nb := pgxAllocs(b, ctx, native, o.run)
				b.ReportMetric(qa, "qorb-allocs/op")
				b.ReportMetric(na, "pgxpool-allocs/op")
				b.ReportMetric(qb, "qorb-B/op")
				b.ReportMetric(nb, "pgxpool-B/op")
			})
		}
	}
}

// pgxAllocs returns the allocations and bytes per operation of run
// through p, over operations run one at a time.
func pgxAllocs(b *testing.B, ctx context.Context, p pgxAPI, run func(context.Context, pgxAPI) error) (allocs, bytes float64) {
	const n = 2000
	for range 100 {
		run(ctx, p)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		if err := run(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / n, float64(after.TotalAlloc-before.TotalAlloc) / n
}
