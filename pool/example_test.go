package pool_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/qorb-go/qorb/pool"
	"github.com/qorb-go/qorb/resolver"
)

// tcpConnector opens plain TCP connections. A real connector would
// speak the backend's protocol in IsValid and OnRecycle.
type tcpConnector struct{}

func (tcpConnector) Connect(ctx context.Context, b resolver.Backend) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", b.Addr)
}
func (tcpConnector) IsValid(context.Context, net.Conn) error   { return nil }
func (tcpConnector) OnRecycle(context.Context, net.Conn) error { return nil }
func (tcpConnector) Close(c net.Conn) error                    { return c.Close() }

func ExampleNew() {
	// Two local backends.
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	backends, err := resolver.ParseAddrs(0, addrs...)
	if err != nil {
		panic(err)
	}
	r, err := resolver.NewStatic(backends...)
	if err != nil {
		panic(err)
	}

	p, err := pool.New(r, tcpConnector{}, pool.Policy{MaxSlots: 4, Spares: 2})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.Claim(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("claimed a connection to", c.Backend().Addr == addrs[0] || c.Backend().Addr == addrs[1])
	c.Release()
	fmt.Println("backends:", len(p.Stats().Backends))
	// Output:
	// claimed a connection to true
	// backends: 2
}
