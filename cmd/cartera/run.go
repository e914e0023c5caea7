package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
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
	// holdApply, when set, holds serve's applier back until it is closed:
	// tests use it to make applying lag for as long as they need.
	holdApply <-chan struct{}
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

// commandFlags is the flag set of one command, with the buffer its
// mistakes are written to until parse prints them once.
type commandFlags struct {
	*flag.FlagSet
	out bytes.Buffer
}

func newCommandFlags(name string) *commandFlags {
	c := &commandFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.SetOutput(&c.out)
	return c
}

// parse parses args: a flag mistake is printed with the flags to stderr
// and returned as a usageError, and so are arguments a command without
// positional ones was given.
func (c *commandFlags) parse(m *Main, args []string, positional bool) error {
	if err := c.Parse(args); err != nil {
		_, _ = io.Copy(m.Stderr, &c.out)
		return &usageError{err.Error()}
	}
	if !positional && c.NArg() > 0 {
		return &usageError{fmt.Sprintf("%s takes no arguments, got %q", c.Name(), c.Args())}
	}
	return nil
}

// visited records, in f.set, the flags given on the command line (they
// win over the config file and the environment).
func (c *commandFlags) visited(f *serveFlags) *serveFlags {
	f.set = map[string]bool{}
	c.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f
}
