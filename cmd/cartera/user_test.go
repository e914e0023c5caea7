package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cartera/cmd/cartera/console"
)

func TestUserAdd(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string // the printed line's start, or the error's
		usage bool
	}{
		{"name first", []string{"user", "add", "mara", "--role", "marketer"}, "a-long-password\n", `    - {name: mara, role: marketer, password_bcrypt: "$2a$12$`, false},
		{"flags first", []string{"user", "add", "--role=admin", "ana"}, "a-long-password", `    - {name: ana, role: admin, password_bcrypt: "$2a$12$`, false},
		{"viewer by default", []string{"user", "add", "vic"}, "a-long-password\r\n", `    - {name: vic, role: viewer, password_bcrypt: "$2a$12$`, false},
		{"short password", []string{"user", "add", "mara"}, "short\n", "user add: password: want at least 12 characters", true},
		{"bad role", []string{"user", "add", "mara", "--role", "root"}, "a-long-password\n", `user add: role: want viewer, marketer or admin, got "root"`, true},
		{"no name", []string{"user", "add", "--role", "admin"}, "a-long-password\n", "user add: NAME is required", true},
		{"not add", []string{"user", "remove", "mara"}, "", "usage: cartera user add", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			m := &Main{Stdin: strings.NewReader(tc.stdin), Stdout: &out, Stderr: &errOut, Getenv: envOf(nil)}
			err := m.Run(context.Background(), tc.args)
			if tc.usage {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), tc.want) {
					t.Fatalf("err = %v, want a usage error %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.String(), tc.want) || strings.Contains(out.String()+errOut.String(), "a-long-password") {
				t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
			}
		})
	}
}

// The printed line, pasted into a config, lets that user in.
func TestUserAddLinePastes(t *testing.T) {
	var out strings.Builder
	m := &Main{Stdin: strings.NewReader("pasted-password-1\n"), Stdout: &out, Stderr: &strings.Builder{}}
	if err := m.Run(context.Background(), []string{"user", "add", "paula", "--role", "admin"}); err != nil {
		t.Fatal(err)
	}
	cfg := "console:\n  users:\n" + out.String()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	if err := readConfigFile(path, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Console.Validate(); err != nil || len(c.Console.Users) != 1 || c.Console.Users[0].Role != console.RoleAdmin {
		t.Fatalf("pasted line: %v %+v", err, c.Console.Users)
	}
}
