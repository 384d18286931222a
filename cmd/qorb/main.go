// Command qorb is the command-line tool of qorb for Go.
//
// Usage:
//
//	qorb <command> [flags] [arguments]
//
// The commands are:
//
//	demo      watch the pool spread load and ride through a backend dying, with nothing installed
//	resolve   look up the backends of an SRV name, once or as they change
//	top       show a pool's stats live, from the JSON of statshttp.Handler
//
// Run "qorb <command> -h" for a command's flags.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// A command is one subcommand of qorb. Each lives in a file of its own and
// adds itself to the list with register from an init function.
type command struct {
	name    string
	summary string
	// run runs the command with the arguments after its name and returns
	// the exit status. It stops when ctx is done (on SIGINT or SIGTERM).
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands, in the order they were registered.
var commands []command

// register adds a subcommand. It is called from init functions only.
func register(c command) { commands = append(commands, c) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to the subcommand named by args[0] and returns the exit
// status: the command's own, or 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "qorb: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return commands[i].run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: qorb <command> [flags] [arguments]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"qorb <command> -h\" for a command's flags.\n")
	io.WriteString(w, b.String())
}
