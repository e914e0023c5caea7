package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cartera/profiles"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigPrecedence(t *testing.T) {
	path := writeFile(t, "c.yaml", `
addr: 127.0.0.1:9000
data: /tmp/file.db
admin_token: file-token-0123456789
sources:
  - name: web
    write_keys: [file_web_key]
`)
	var stderr bytes.Buffer
	f, err := parseServeFlags([]string{"--config", path, "--addr", "127.0.0.1:9100"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f, envOf(map[string]string{
		"CARTERA_ADDR":        "127.0.0.1:9050",
		"CARTERA_ADMIN_TOKEN": "env-token-0123456789",
		"CARTERA_WRITE_KEYS":  "env_web_key=web,env_app_key=app",
		// app exists only through CARTERA_WRITE_KEYS.
		"CARTERA_ALLOWED_ORIGINS": "web=https://shop.example, web=https://www.shop.example,app=*",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9100" {
		t.Errorf("addr = %q, want the flag's value", cfg.Addr)
	}
	if cfg.Data != "/tmp/file.db" {
		t.Errorf("data = %q, want the file's value", cfg.Data)
	}
	if cfg.AdminToken != "env-token-0123456789" {
		t.Errorf("admin token not taken from the environment")
	}
	if len(cfg.Sources) != 2 || cfg.Sources[0].Name != "web" || strings.Join(cfg.Sources[0].WriteKeys, ",") != "env_web_key" ||
		cfg.Sources[1].Name != "app" || strings.Join(cfg.Sources[1].WriteKeys, ",") != "env_app_key" {
		t.Errorf("sources = %+v, want env keys replacing the file's", cfg.Sources)
	}
	if len(cfg.Sources) == 2 && (strings.Join(cfg.Sources[0].AllowedOrigins, " ") != "https://shop.example https://www.shop.example" ||
		strings.Join(cfg.Sources[1].AllowedOrigins, " ") != "*") {
		t.Errorf("allowed origins %q and %q, want the environment's", cfg.Sources[0].AllowedOrigins, cfg.Sources[1].AllowedOrigins)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"unknown field", "adr: x\n", nil, "line 1: field adr not found"},
		{"bad addr", "addr: nowhere\n", nil, `addr: want host:port, got "nowhere"`},
		{"short admin token", "admin_token: short\n", nil, "admin_token: want at least 16 characters"},
		{"bad write keys env", "", map[string]string{"CARTERA_WRITE_KEYS": "novalue"}, "CARTERA_WRITE_KEYS: entry 1: want key=source"},
		{"bad allowed origins env", "", map[string]string{"CARTERA_ALLOWED_ORIGINS": "https://shop.example"}, "CARTERA_ALLOWED_ORIGINS: entry 1: want source=origin"},
		{"allowed origins of no source", "", map[string]string{"CARTERA_ALLOWED_ORIGINS": "shop=https://shop.example"}, `CARTERA_ALLOWED_ORIGINS: entry 1: no source "shop"`},
		{"allowed origin with a path", "sources:\n  - name: web\n    allowed_origins: [https://shop.example/home]\n", nil, `sources[0].allowed_origins[0]: want scheme://host[:port] with no path`},
		{"short write key", "sources:\n  - name: web\n    write_keys: [abc]\n", nil, "sources[0].write_keys[0]: want at least 8 characters"},
		{"bad plan mode", "sources:\n  - name: web\n    tracking_plan: {mode: loose}\n", nil, `sources[0].tracking_plan.mode: want strict or warn, got "loose"`},
		{"bad identity kind", "profiles:\n  identity:\n    kinds: [{name: card, paths: [foo.card]}]\n", nil, `identity.kinds[0].paths[0]: want a path under traits, properties or context, got "foo.card"`},
		{"bad smtp", "smtp_url: http://x\n", nil, "smtp_url: want smtp://user:pass@host:port"},
		{"negative hot profiles", "profiles:\n  hot_profiles: -1\n", nil, "profiles.hot_profiles: want 0 (none) to 10000000, got -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "c.yaml", tc.yaml)
			var stderr bytes.Buffer
			f, err := parseServeFlags([]string{"--config", path}, &stderr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = loadConfig(f, envOf(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	var stderr bytes.Buffer
	f, err := parseServeFlags([]string{"--config", "../../examples/cartera.yaml"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	// The web page and the app hold public keys; the shop's backend and
	// the tills are trusted with orders.
	trust := map[string]string{}
	for _, s := range cfg.Sources {
		trust[s.Name] = s.Trust
	}
	want := map[string]string{"web": profiles.TrustClient, "app": profiles.TrustClient, "shop": profiles.TrustServer, "pos": profiles.TrustServer}
	if !maps.Equal(trust, want) {
		t.Errorf("sources and trust = %v, want %v", trust, want)
	}
}
