package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cartera/profiles"
)

// seedPerson writes a data file holding one person, ana, with the
// examples' profile settings; the seeded source makes the profile id the
// same on every run.
func seedPerson(t *testing.T, traits map[string]any) string {
	t.Helper()
	cfg, err := loadConfig(&serveFlags{config: "../../examples/cartera.yaml", set: map[string]bool{"config": true}}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cartera.db")
	pc := cfg.Profiles
	pc.NoSync = true
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	st, err := profiles.Open(context.Background(), path, pc, profiles.Options{Rand: rand.NewChaCha8([32]byte{'p'}), Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	ev := &profiles.Event{Type: profiles.TypeIdentify, MessageID: "m1", UserID: "ana", Traits: traits, Timestamp: at, ReceivedAt: at, Source: "web"}
	if _, err := st.Ingest(context.Background(), []*profiles.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func runPreview(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: envOf(nil)}
	err := m.Run(context.Background(), append([]string{"preview", "--config", "../../examples/cartera.yaml"}, args...))
	return stdout.String(), stderr.String(), err
}

// TestPreview is issue 20's item 7: preview renders a template's subject,
// text and HTML for a person of the data file (read-only), or for a
// sample person, with an event's properties as the trigger.
func TestPreview(t *testing.T) {
	data := seedPerson(t, map[string]any{"first_name": "Lucía", "email": "lucia@example.com", "locale": "es"})
	tests := []struct {
		name string
		args []string
		// also are lines the golden must hold, so that a golden rewritten
		// with -update cannot quietly accept a wrong render.
		also []string
	}{
		{"sample_es", []string{"--template", "cart_reminder", "--locale", "es", "--event", "testdata/preview/cart_event.json"},
			[]string{"Locale:    es", "Subject:   Ana, tu carrito te espera", "https://shoes.example/cart/c1"}},
		{"profile", []string{"--template", "welcome", "--profile", "user_id:ana", "--data", data},
			[]string{"Locale:    es", "Person:    user_id:ana (profile ", "Hola, Lucía"}},
		{"profile_locale", []string{"--template", "welcome", "--profile", "user_id:ana", "--data", data, "--locale", "en"},
			[]string{"Locale:    en", "Subject:   Welcome to Cartera Rewards, Lucía"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, stderr, err := runPreview(t, tc.args...)
			if err != nil {
				t.Fatalf("preview: %v\n%s", err, stderr)
			}
			golden := filepath.Join("testdata/preview", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (go test -run TestPreview -update):\n%s", golden, got)
			}
			for _, l := range tc.also {
				if !strings.Contains(got, l) {
					t.Errorf("output lacks %q", l)
				}
			}
			for _, never := range []string{"evil.example", "/t/c/", "/t/o/"} {
				if strings.Contains(got, never) {
					t.Errorf("output holds %q", never)
				}
			}
		})
	}

	errs := []struct {
		name string
		args []string
		want string
	}{
		{"unknown template", []string{"--template", "nope"}, `template "nope": no such email template (have birthday, cart_reminder`},
		{"unknown person", []string{"--template", "welcome", "--profile", "user_id:bob", "--data", data}, "--profile user_id:bob: no profile holds that identifier"},
		{"bad identifier", []string{"--template", "welcome", "--profile", "bob"}, "--profile: "},
		{"no template flag", nil, "--template is required"},
		{"no data file", []string{"--template", "welcome", "--profile", "user_id:ana", "--data", filepath.Join(t.TempDir(), "none.db")}, "none.db: "},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runPreview(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("data file in use", func(t *testing.T) {
		st, err := profiles.Open(context.Background(), data, profiles.DefaultConfig(), profiles.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, _, err = runPreview(t, "--template", "welcome", "--profile", "user_id:ana", "--data", data)
		if !errors.Is(err, profiles.ErrInUse) {
			t.Errorf("err = %v, want ErrInUse", err)
		}
	})
}
