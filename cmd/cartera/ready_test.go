package main

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"cartera/cmd/cartera/console"
	"cartera/profiles"
)

func bcryptOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), console.MinPasswordCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestReadyHint(t *testing.T) {
	devHash, otherHash := bcryptOf(t, console.DevPassword), bcryptOf(t, "a deployment's password")
	sources := []profiles.SourceConfig{
		{Name: "pos", WriteKeys: []string{"pos_key"}, Plan: &profiles.Plan{Mode: profiles.PlanStrict}},
		{Name: "web", WriteKeys: []string{"web_key"}},
	}
	tests := []struct {
		name    string
		hint    readyHint
		want    []string
		mustNot []string
	}{
		{
			name: "examples",
			hint: readyHint{addr: "127.0.0.1:8080", cfg: &Config{path: "examples/cartera.yaml", Data: "./data/cartera.db", AdminToken: "dev-admin-token-change-me", Sources: sources}},
			want: []string{"http://127.0.0.1:8080 (config examples/cartera.yaml", "admin_token in examples/cartera.yaml",
				"curl -u web_key: -H 'Content-Type: application/json' -d '{", "' http://127.0.0.1:8080/v1/track\n"},
			mustNot: []string{"dev-admin-token-change-me", "pos_key"},
		},
		{
			name:    "secrets from the environment",
			hint:    readyHint{addr: "[::]:9000", cfg: &Config{Data: "/var/lib/cartera.db", AdminToken: "from-env-token-0123456789", Sources: sources}, tokenFromEnv: true, keysFromEnv: true},
			want:    []string{"http://127.0.0.1:9000 (config none", "from CARTERA_ADMIN_TOKEN", "curl -u <write key>:"},
			mustNot: []string{"from-env-token-0123456789", "web_key", "pos_key"},
		},
		{
			name: "no admin token",
			hint: readyHint{addr: "127.0.0.1:8080", cfg: &Config{Data: "d.db"}},
			want: []string{"none set", "CARTERA_ADMIN_TOKEN", "curl -u <write key>:", "console:     http://127.0.0.1:8080/console/ (no users yet: cartera user add"},
		},
		{
			name: "console dev login",
			hint: readyHint{addr: "127.0.0.1:8080", cfg: &Config{path: "examples/cartera.yaml", Data: "d.db", Console: console.Config{Users: []console.User{{Name: "dev", Role: console.RoleAdmin, PasswordBcrypt: devHash}}}}},
			want: []string{"console:     http://127.0.0.1:8080/console/ (dev login, DEVELOPMENT ONLY: user dev, password dev-console-password, role admin; from examples/cartera.yaml)"},
		},
		{
			name:    "console users of a deployment",
			hint:    readyHint{addr: "127.0.0.1:8080", cfg: &Config{path: "/etc/cartera.yaml", Data: "d.db", Console: console.Config{Users: []console.User{{Name: "dev", Role: console.RoleAdmin, PasswordBcrypt: otherHash}}}}},
			want:    []string{"console:     http://127.0.0.1:8080/console/ (1 users in console.users of /etc/cartera.yaml)"},
			mustNot: []string{"dev-console-password"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			tc.hint.write(&b)
			out := b.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("want %q in:\n%s", w, out)
				}
			}
			for _, w := range tc.mustNot {
				if strings.Contains(out, w) {
					t.Errorf("%q must not be printed:\n%s", w, out)
				}
			}
			if n := strings.Count(out, "\n"); n > 7 {
				t.Errorf("%d lines, want at most 7:\n%s", n, out)
			}
		})
	}
}
