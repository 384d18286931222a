package integration

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/qorb-go/qorb/internal/dbtest"
)

// BenchmarkVersusDirect runs SELECT 1 and a prepared statement through
// sql.DB + qorb against sql.DB over pgx's stdlib connector straight to the
// same PostgreSQL server, both with 16 connections, at 1, 16 and 64
// goroutines. Each goroutine alternates one operation through each, so
// both see the same server and machine load, and the benchmark reports
// qorb's throughput as a fraction of the direct one ("ratio"), and each
// side's time per operation.
func BenchmarkVersusDirect(b *testing.B) {
	const conns = 16
	pg := dbtest.StartPostgres(b, 1)[0]

	cfg, err := pgx.ParseConfig(pg.DSN())
	if err != nil {
		b.Fatal(err)
	}
	direct := stdlib.OpenDB(*cfg)
	direct.SetMaxOpenConns(conns)
	direct.SetMaxIdleConns(conns)
	defer direct.Close()

	viaQorb, err := sql.Open("qorb", fmt.Sprintf(
		"postgres://%s:%s@%s/%s?sslmode=disable&pool_max_conns=%d&pool_spares=%d",
		dbtest.User, dbtest.Password, pg.Addr(), dbtest.Database, conns, conns))
	if err != nil {
		b.Fatal(err)
	}
	defer viaQorb.Close()

	type op func(ctx context.Context, db *sql.DB, st *sql.Stmt) error
	ops := []struct {
		name string
		run  op
	}{
		{"query=select1", func(ctx context.Context, db *sql.DB, _ *sql.Stmt) error {
			var n int
			return db.QueryRowContext(ctx, "SELECT 1").Scan(&n)
		}},
		{"query=prepared", func(ctx context.Context, _ *sql.DB, st *sql.Stmt) error {
			var n int
			return st.QueryRowContext(ctx, 7).Scan(&n)
		}},
	}
	stmts := map[*sql.DB]*sql.Stmt{}
	for _, db := range []*sql.DB{direct, viaQorb} {
		st, err := db.Prepare("SELECT $1::int")
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		stmts[db] = st
	}
	ctx := context.Background()
	for _, o := range ops {
		for _, g := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", o.name, g), func(b *testing.B) {
				// Warm both pools to their full size.
				var warm sync.WaitGroup
				for range conns {
					warm.Go(func() {
						o.run(ctx, direct, stmts[direct])
						o.run(ctx, viaQorb, stmts[viaQorb])
					})
				}
				warm.Wait()

				var (
					mu                 sync.Mutex
					qorbTime, direTime time.Duration
					wg                 sync.WaitGroup
				)
				b.ResetTimer()
				for i := range g {
					n := b.N / g
					if i < b.N%g {
						n++
					}
					wg.Go(func() {
						var q, d time.Duration
						for range n {
							t0 := time.Now()
							if err := o.run(ctx, viaQorb, stmts[viaQorb]); err != nil {
								b.Error(err)
								return
							}
							t1 := time.Now()
							if err := o.run(ctx, direct, stmts[direct]); err != nil {
								b.Error(err)
								return
							}
							d += time.Since(t1)
							q += t1.Sub(t0)
						}
						mu.Lock()
						qorbTime += q
						direTime += d
						mu.Unlock()
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(direTime)/float64(qorbTime), "ratio")
				b.ReportMetric(float64(qorbTime.Nanoseconds())/float64(b.N), "qorb-ns/op")
				b.ReportMetric(float64(direTime.Nanoseconds())/float64(b.N), "direct-ns/op")
			})
		}
	}
}
