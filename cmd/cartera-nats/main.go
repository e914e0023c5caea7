// Command cartera-nats runs a local NATS JetStream cluster for Cartera's
// cluster mode: `make cluster` starts it with three servers on loopback,
// then a Cartera node whose event log is a stream replicated on all three.
// It is for trying cluster mode on one machine; production runs
// nats-server on machines of its own.
//
//	cartera-nats --servers 3 --dir data/nats --port 4222 --route-port 6222
//
// It prints each server's client URL once JetStream has a leader, writes
// the comma-separated URLs to --ready-file if given, and runs until
// interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cartera/internal/natscluster"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cartera-nats:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cartera-nats", flag.ContinueOnError)
	var cfg natscluster.Config
	fs.IntVar(&cfg.Servers, "servers", 3, "NATS servers in the cluster")
	fs.StringVar(&cfg.Dir, "dir", "data/nats", "folder of the servers' JetStream stores")
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address the servers listen on")
	fs.IntVar(&cfg.ClientPort, "port", 4222, "first server's client port (the others take the next ones; 0: any free port)")
	fs.IntVar(&cfg.RoutePort, "route-port", 6222, "first server's cluster port (likewise)")
	fs.BoolVar(&cfg.Logs, "logs", false, "print the servers' own logs")
	ready := fs.String("ready-file", "", "write the servers' URLs to this file once JetStream has a leader")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := natscluster.Start(startCtx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	for i, u := range c.URLs {
		fmt.Fprintf(out, "nats n%d: %s (JetStream store %s/n%d)\n", i+1, u, cfg.Dir, i+1)
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(c.URL()+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", *ready, err)
		}
		defer os.Remove(*ready)
	}
	<-ctx.Done()
	return nil
}
