package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path relative to dir → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// marketerFolder is a team's own folder: its config, journeys, rules,
// policies, templates and the events it replays, side by side.
func marketerFolder() map[string]string {
	return map[string]string{
		"cartera.yaml": `addr: 127.0.0.1:8080
admin_token: marketer-admin-token-0123
policies: policies.yaml
journeys: journeys
rules: [rules/audiences.yaml]
channels:
  email:
    templates: templates
`,
		"policies.yaml": "policies:\n  timezone: Europe/Madrid\n  consent_required: [email]\n",
		"rules/audiences.yaml": `audiences:
  - name: buyers
    expression: profile.computed.orders > 0
computed_traits:
  - name: orders
    aggregate: count
    event: Order Completed
`,
		"journeys/review.yaml": `id: review
trigger:
  event: Order Completed
steps:
  - id: wait
    wait: 72h
  - id: ask
    send: {channel: email, template: review_request}
`,
		"templates/review_request.yaml":    "subject: How were your {{get .Trigger \"product\"}}?\n",
		"templates/review_request.html":    "<p>Hi {{.Profile.Trait \"first_name\"}}</p>\n",
		"templates/review_request.txt":     "Hi {{.Profile.Trait \"first_name\"}}\n",
		"templates/review_request.es.yaml": "subject: ¿Qué tal tus {{get .Trigger \"product\"}}?\n",
		"templates/review_request.es.html": "<p>Hola {{.Profile.Trait \"first_name\"}}</p>\n",
		"templates/review_request.es.txt":  "Hola {{.Profile.Trait \"first_name\"}}\n",
		"events.ndjson":                    `{"type":"track","userId":"ana","event":"Order Completed","timestamp":"2026-03-02T10:00:00Z"}` + "\n",
		"NOTES.md":                         "# what we run\n",
	}
}

func runValidate(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: envOf(nil)}
	err = m.Run(context.Background(), append([]string{"validate"}, args...))
	return out.String(), errb.String(), err
}

// TestValidateFolderWithItsOwnConfig is issue 20's item 3: validate on a
// folder that holds its config reads each file as what the config says it
// is, skips what is none of its kinds with a note, and names the kind of
// file each error is about.
func TestValidateFolderWithItsOwnConfig(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, marketerFolder())
		stdout, stderr, err := runValidate(t, "--config", filepath.Join(dir, "cartera.yaml"), dir)
		if err != nil {
			t.Fatalf("validate: %v\n%s", err, stderr)
		}
		// config, policies, rules, journey and six template files.
		if want := "ok: 10 file(s), 1 computed trait(s), 1 audience(s), 1 journey(s), 2 skipped\n"; stdout != want {
			t.Errorf("stdout = %q, want %q", stdout, want)
		}
		for _, want := range []string{
			filepath.Join(dir, "events.ndjson") + ": skipped: not a journey, rule, policy or template file\n",
			filepath.Join(dir, "NOTES.md") + ": skipped: not a journey, rule, policy or template file\n",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if strings.Contains(stderr, "unknown field") {
			t.Errorf("the config was read as another kind of file:\n%s", stderr)
		}
	})

	tests := []struct {
		name  string
		files map[string]string
		want  []string // lines of stderr, with DIR for the folder
	}{
		{"journey error", map[string]string{"journeys/review.yaml": "id: review\ntrigger:\n  event: Order Completed\nsteps:\n  - id: ask\n    send: {channel: email, template: nope}\n"},
			[]string{`DIR/journeys/review.yaml:6:38: journey: send.template: unknown template "nope"`}},
		{"rules error", map[string]string{"rules/audiences.yaml": "audiences:\n  - name: buyers\n    expression: profile.computed.orders > \"x\"\n"},
			[]string{"DIR/rules/audiences.yaml:3:", ": rules: "}},
		{"policies error", map[string]string{"policies.yaml": "policies:\n  timezone: Mars/Olympus\n"},
			[]string{"DIR/policies.yaml:2:13: policies: timezone: unknown time zone Mars/Olympus"}},
		{"template error", map[string]string{"templates/review_request.es.html": "<p>{{.Profile.Nmae}}</p>\n"},
			[]string{"DIR/templates/review_request.es.html:1:", ": email template: <.Profile.Nmae>: can't evaluate field Nmae"}},
		{"another config beside it", map[string]string{"staging.yaml": "addr: 127.0.0.1:9000\nadmin_tokn: x\n"},
			[]string{`DIR/staging.yaml:2:1: config: unknown field "admin_tokn"`}},
		{"a journey the config does not name", map[string]string{"drafts/winback.yaml": "id: winback\ntrigger:\n  event: Order Completed\nsteps:\n  - id: ask\n    send: {channel: pigeon, template: review_request}\n"},
			[]string{`DIR/drafts/winback.yaml:6:21: journey: send.channel: unknown channel "pigeon"`}},
		{"broken YAML nobody names", map[string]string{"drafts/broken.yaml": "id: [\n"},
			[]string{"DIR/drafts/broken.yaml:1:1: not valid YAML: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := marketerFolder()
			for k, v := range tc.files {
				files[k] = v
			}
			writeTree(t, dir, files)
			_, stderr, err := runValidate(t, "--config", filepath.Join(dir, "cartera.yaml"), dir)
			if !errors.Is(err, errReported) {
				t.Fatalf("err = %v, want errReported; stderr:\n%s", err, stderr)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR", dir)
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if !strings.Contains(stderr, "error(s) in ") {
				t.Errorf("no summary line:\n%s", stderr)
			}
		})
	}
}

// TestValidateBestTime: a send's at, within and fallback are checked by
// validate, each error naming the file, the place and the field.
func TestValidateBestTime(t *testing.T) {
	dir := t.TempDir()
	files := marketerFolder()
	files["journeys/restock.yaml"] = "id: restock\ntrigger:\n  event: Back In Stock\nsteps:\n" +
		"  - id: tell\n    send: {channel: email, template: review_request, at: bestest, within: 9d}\n" +
		"  - id: again\n    send: {channel: email, template: review_request, at: best_time, within: 1d, fallback: \"9:30\"}\n"
	writeTree(t, dir, files)
	_, stderr, err := runValidate(t, "--config", filepath.Join(dir, "cartera.yaml"), dir)
	if !errors.Is(err, errReported) {
		t.Fatalf("err = %v, want errReported; stderr:\n%s", err, stderr)
	}
	for _, w := range []string{
		`DIR/journeys/restock.yaml:6:58: journey: send.at: want best_time, got "bestest"`,
		`DIR/journeys/restock.yaml:6:75: journey: send.within: want a duration from 1h to 7d, got "9d"`,
		`DIR/journeys/restock.yaml:8:91: journey: send.fallback: want a whole local hour HH:00, got "9:30"`,
	} {
		if w = strings.ReplaceAll(w, "DIR", dir); !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}
