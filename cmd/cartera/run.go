package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Main is the program, with its outside world made explicit so that tests
// can run it in-process.
type Main struct {
	// Stdin is read by user add (the password).
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment; os.Getenv by default.
	Getenv func(string) string
	// OnListen, when set, is told the address the server listens on
	// (tests pass --addr 127.0.0.1:0).
	OnListen func(addr string)
	// OnMetricsListen, when set, is told the address of the metrics
	// listener (metrics_addr).
	OnMetricsListen func(addr string)
}

// NewMain returns a Main wired to the process's stdio and environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// errReported means the command already printed its errors.
var errReported = errors.New("errors reported")

const usage = `usage: cartera <command> [flags]

commands:
  serve      run the gateway
  validate   check journey, trait, audience and template files
  simulate   replay events through the journey engine
  preview    render an email template for a person (or a sample one)
  demo       replay the seed scenario against a running gateway (make demo)
  compact    rewrite a stopped gateway's bbolt file with its live data only
  user add   print a console user's config line (password on stdin)
`

// Run executes one command.
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return &usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return m.serve(ctx, args[1:])
	case "validate":
		return m.validate(ctx, args[1:])
	case "simulate":
		return m.simulate(ctx, args[1:])
	case "preview":
		return m.preview(ctx, args[1:])
	case "demo":
		return m.demo(ctx, args[1:])
	case "compact":
		return m.compact(ctx, args[1:])
	case "user":
		return m.user(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	default:
		fmt.Fprint(m.Stderr, usage)
		return &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}
