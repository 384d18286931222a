package pool

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/puddle/v2"
	"github.com/qorb-go/qorb/resolver"
)

// benchSize is the number of connections every pool in the benchmarks
// holds: qorb's default MaxSlots.
const benchSize = 16

// runGoroutines runs op b.N times spread over g goroutines.
func runGoroutines(b *testing.B, g int, op func()) {
	b.ReportAllocs()
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range g {
		n := b.N / g
		if i < b.N%g {
			n++
		}
		wg.Go(func() {
			for range n {
				op()
			}
		})
	}
	wg.Wait()
}

// benchPool returns a warm pool of benchSize connections over n backends.
func benchPool(b *testing.B, n int) *Pool[*fakeConn] {
	r, err := resolver.NewStatic(backends(n)...)
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(r, newFakeConnector(), Policy{
		MaxSlots: benchSize, Spares: benchSize, Recycle: RecycleInline,
		HealthInterval: -1, MaxLifetime: -1, MaxIdleTime: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	// Wait until every slot is connected.
	for {
		st := p.Stats()
		idle := 0
		for _, bs := range st.Backends {
			idle += bs.Idle
		}
		if idle == benchSize {
			return p
		}
		c, err := p.Claim(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		c.Release()
	}
}

// BenchmarkClaimRelease measures one claim and release of a connection,
// against puddle and a buffered-channel pool holding the same number of
// connections.
func BenchmarkClaimRelease(b *testing.B) {
	ctx := context.Background()
	for _, g := range []int{1, 8, 64} {
		// With 1,000 backends in the tier only benchSize of them hold a
		// connection, as in a fleet whose pools are much smaller than
		// its cluster.
		for _, n := range []int{1, 3, 1000} {
			b.Run(fmt.Sprintf("pool=qorb/backends=%d/goroutines=%d", n, g), func(b *testing.B) {
				p := benchPool(b, n)
				runGoroutines(b, g, func() {
					c, err := p.Claim(ctx)
					if err != nil {
						panic(err)
					}
					c.Release()
				})
			})
		}
		b.Run(fmt.Sprintf("pool=puddle/goroutines=%d", g), func(b *testing.B) {
			pp, err := puddle.NewPool(&puddle.Config[*fakeConn]{
				Constructor: func(context.Context) (*fakeConn, error) { return &fakeConn{}, nil },
				Destructor:  func(*fakeConn) {},
				MaxSize:     benchSize,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer pp.Close()
			for range benchSize {
				if err := pp.CreateResource(ctx); err != nil {
					b.Fatal(err)
				}
			}
			runGoroutines(b, g, func() {
				r, err := pp.Acquire(ctx)
				if err != nil {
					panic(err)
				}
				r.Release()
			})
		})
		b.Run(fmt.Sprintf("pool=channel/goroutines=%d", g), func(b *testing.B) {
			ch := make(chan *fakeConn, benchSize)
			for range benchSize {
				ch <- &fakeConn{}
			}
			runGoroutines(b, g, func() {
				c := <-ch
				ch <- c
			})
		})
	}
}

// BenchmarkClaimFiltered measures a claim limited to some backends by a
// filter that captures nothing.
func BenchmarkClaimFiltered(b *testing.B) {
	ctx := context.Background()
	p := benchPool(b, 3)
	odd := func(b resolver.Backend) bool { return b.Addr != "127.0.0.1:10002" }
	runGoroutines(b, 1, func() {
		c, err := p.ClaimFiltered(ctx, odd)
		if err != nil {
			panic(err)
		}
		c.Release()
	})
}
