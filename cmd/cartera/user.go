package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"cartera/cmd/cartera/console"
)

// user runs `cartera user add NAME --role ROLE`: it reads the password
// from the first line of stdin and prints the console.users line to paste
// into the config. It writes no file and prints no password.
func (m *Main) user(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "add" {
		return &usageError{"usage: cartera user add NAME --role viewer|marketer|admin  (password on stdin)"}
	}
	var flagErr bytes.Buffer
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(&flagErr)
	role := fs.String("role", "viewer", "viewer, marketer or admin")
	// NAME may come before or after the flags.
	rest := args[1:]
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		_, _ = io.Copy(m.Stderr, &flagErr)
		return &usageError{err.Error()}
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("user add takes one NAME, got %q", append([]string{name}, fs.Args()...))}
	}
	if name == "" {
		return &usageError{"user add: NAME is required"}
	}
	if m.Stdin == nil {
		return &usageError{"user add: reads the password from stdin"}
	}
	line, err := bufio.NewReader(io.LimitReader(m.Stdin, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	out, err := console.UserLine(name, console.Role(*role), []byte(pw))
	if err != nil {
		return &usageError{"user add: " + err.Error()}
	}
	fmt.Fprintln(m.Stderr, "Add this line under console.users in the config, then restart serve:")
	fmt.Fprintln(m.Stdout, out)
	return nil
}
