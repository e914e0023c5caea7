// Command cartera-bench measures a Cartera gateway: it drives one over
// HTTP with Segment traffic, seeds a store with many profiles for scale
// runs, and measures the machine's fsync latency.
//
// Usage:
//
//	cartera-bench load   [--url URL] [--mode batch|track] [--clients N] [--people M] [--duration D] [--rate EVENTS/S] [--admin-token T]
//	cartera-bench lookup [--url URL] [--people M] [--requests N] [--clients N]
//	cartera-bench seed   --data FILE [--config FILE] [--profiles N]
//	cartera-bench fsync  [--dir DIR] [--count N]
//
// docs/benchmarks.md has the commands behind every published figure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cartera-bench:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: cartera-bench load|lookup|seed|fsync [flags]  (cartera-bench CMD -h for flags)`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "load":
		return load(ctx, args, stdout, stderr)
	case "lookup":
		return lookup(ctx, args, stdout, stderr)
	case "seed":
		return seed(ctx, args, stdout, stderr)
	case "fsync":
		return fsync(args, stdout, stderr)
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
