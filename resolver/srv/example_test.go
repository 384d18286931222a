package srv_test

import (
	"context"
	"fmt"
	"log"

	"github.com/qorb-go/qorb/internal/dnstest"
	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

// The SRV name is the full name the records live under: for PostgreSQL
// that is _postgresql._tcp followed by the service's domain. The example
// asks an in-process DNS server instead of the system's name servers.
func ExampleNew() {
	ns, err := dnstest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer ns.Close()
	ns.SetSRV("_postgresql._tcp.db.example",
		dnstest.SRV{Priority: 0, Weight: 60, Port: 5432, Target: "pg1.db.example", TTL: 30},
		dnstest.SRV{Priority: 0, Weight: 40, Port: 5432, Target: "pg2.db.example", TTL: 30},
		dnstest.SRV{Priority: 1, Weight: 0, Port: 5433, Target: "pg1.db.example", TTL: 30})
	ns.SetA("pg1.db.example", 30, "192.0.2.1")
	ns.SetA("pg2.db.example", 30, "192.0.2.2")
	ns.SetAAAA("pg2.db.example", 30, "2001:db8::2")

	r, err := srv.New("_postgresql._tcp.db.example", srv.Config{
		Servers: []string{ns.Addr()},
	})
	if err != nil {
		log.Fatal(err)
	}
	backends, err := r.Resolve(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range backends {
		fmt.Printf("%s %s priority=%d weight=%d\n", b.Host, b.Addr, b.Priority, b.Weight)
	}
	// Output:
	// pg1.db.example 192.0.2.1:5432 priority=0 weight=60
	// pg2.db.example 192.0.2.2:5432 priority=0 weight=40
	// pg2.db.example [2001:db8::2]:5432 priority=0 weight=40
	// pg1.db.example 192.0.2.1:5433 priority=1 weight=0
}

// Run reports the whole backend set, then each change, until its context
// ends. A pool runs it on a goroutine of its own and cancels the context
// when it closes.
func ExampleResolver_Run() {
	ns, err := dnstest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer ns.Close()
	ns.SetSRV("_mysql._tcp.db.example", dnstest.SRV{Port: 3306, Target: "my1.db.example", TTL: 0})
	ns.SetA("my1.db.example", 0, "192.0.2.7")

	r, err := srv.New("_mysql._tcp.db.example", srv.Config{
		Servers: []string{ns.Addr()},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan []resolver.Backend, 1)
	done := make(chan error)
	go func() { done <- r.Run(ctx, resolver.UpdateFunc(func(set []resolver.Backend) { sets <- set })) }()

	fmt.Println("backends:", <-sets)
	cancel()
	fmt.Println("Run returned:", <-done)
	// Output:
	// backends: [my1.db.example@192.0.2.7:3306]
	// Run returned: context canceled
}
