package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"text/tabwriter"
	"time"

	"github.com/qorb-go/qorb/resolver"
	"github.com/qorb-go/qorb/resolver/srv"
)

func init() {
	register(command{
		name:    "resolve",
		summary: "look up the backends of an SRV name, once or as they change",
		run:     runResolve,
	})
}

const resolveUsage = `usage: qorb resolve [-server HOST:PORT]... [-watch] [-timeout D] [-v] NAME

Looks up the SRV records of NAME, the full SRV name such as
_postgresql._tcp.db.example, and the addresses of their targets, and prints
one backend per line: target, address, port, priority, weight and TTL.

With -watch it keeps resolving as the resolver of a pool does (again when
the TTL runs out, keeping the last set while DNS fails) and prints the set
each time it changes, until interrupted.

The exit status is 1 when NAME does not resolve to any backend, 2 for a
usage error.

flags:
`

// runResolve is "qorb resolve".
func runResolve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qorb resolve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(stderr, resolveUsage)
		fs.PrintDefaults()
	}
	var servers []string
	fs.Func("server", "name server `HOST:PORT` to ask, HOST an IP address (repeatable; default: those of /etc/resolv.conf)", func(s string) error {
		servers = append(servers, s)
		return nil
	})
	watch := fs.Bool("watch", false, "print the backend set each time it changes, until interrupted")
	timeout := fs.Duration("timeout", srv.DefaultQueryTimeout, "timeout of one question to one name server")
	verbose := fs.Bool("v", false, "log every DNS query failure and lookup to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "qorb resolve: want exactly one SRV name")
		fs.Usage()
		return 2
	}
	name := fs.Arg(0)

	cfg := srv.Config{Servers: servers, QueryTimeout: *timeout}
	if *verbose {
		cfg.Observer = srv.LogEvents(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	if *watch {
		return watchSRV(ctx, name, cfg, stdout, stderr)
	}
	r, err := srv.New(name, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "qorb resolve: %v\n", err)
		return 2
	}
	recs, err := r.Lookup(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "qorb resolve: %s does not resolve: %v\n", r.Name(), err)
		return 1
	}
	printRecords(stdout, recs)
	return 0
}

// watchSRV runs the resolver until ctx is done and prints each set, then
// tells cfg.Observer, if any, of the event.
func watchSRV(ctx context.Context, name string, cfg srv.Config, stdout, stderr io.Writer) int {
	also := cfg.Observer
	cfg.Observer = srv.ObserverFunc(func(ev srv.Event) {
		if also != nil {
			defer also.Observe(ev)
		}
		now := time.Now().Format(time.TimeOnly)
		switch ev.Kind {
		case srv.EventUpdate:
			if len(ev.Records) == 0 {
				fmt.Fprintf(stdout, "# %s no backends: %v\n", now, ev.Err)
				return
			}
			fmt.Fprintf(stdout, "# %s %d backends\n", now, len(ev.Records))
			printRecords(stdout, ev.Records)
		case srv.EventEmptyPending:
			fmt.Fprintf(stderr, "qorb resolve: %s %v; keeping the last set until the next answer says so too\n", now, ev.Err)
		case srv.EventLookupFailed:
			fmt.Fprintf(stderr, "qorb resolve: %s %v; keeping the last set, retrying in %v\n", now, ev.Err, ev.Next.Round(time.Millisecond))
		}
	})
	r, err := srv.New(name, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "qorb resolve: %v\n", err)
		return 2
	}
	if err := r.Run(ctx, resolver.UpdateFunc(func([]resolver.Backend) {})); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "qorb resolve: %v\n", err)
		return 1
	}
	return 0
}

// printRecords prints one backend per line, in aligned columns.
func printRecords(w io.Writer, recs []srv.Record) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tADDRESS\tPORT\tPRIORITY\tWEIGHT\tTTL")
	for _, r := range recs {
		host, port, err := net.SplitHostPort(r.Addr)
		if err != nil {
			host, port = r.Addr, ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", r.Host, host, port, r.Priority, r.Weight, ttlString(r.TTL))
	}
	tw.Flush()
}

// ttlString prints a TTL in whole seconds, as DNS tools do.
func ttlString(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }
