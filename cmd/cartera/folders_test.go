package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestFoldersYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    Folders
		wantErr string
	}{
		{"journeys: journeys\n", Folders{"journeys"}, ""},
		{"journeys: [journeys, ../team/journeys]\n", Folders{"journeys", "../team/journeys"}, ""},
		{"journeys:\n  - a\n  - b\n", Folders{"a", "b"}, ""},
		{"journeys:\n", nil, ""},
		{"journeys: {a: b}\n", nil, "line 1: want a folder or a list of folders"},
		{"journeys: [a, [b]]\n", nil, "line 1: want a folder name"},
	}
	for _, tc := range tests {
		var v struct {
			Journeys Folders `yaml:"journeys"`
		}
		err := yaml.Unmarshal([]byte(tc.in), &v)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(v.Journeys, tc.want) {
			t.Errorf("%q: got %q, %v; want %q", tc.in, v.Journeys, err, tc.want)
		}
	}
}

// teamFolder is the marketer folder with the team's own journeys and
// templates in folders of their own, both listed in the config.
func teamFolder() map[string]string {
	files := marketerFolder()
	files["cartera.yaml"] = strings.Replace(strings.Replace(files["cartera.yaml"],
		"journeys: journeys\n", "journeys: [journeys, team/journeys]\n", 1),
		"    templates: templates\n", "    templates:\n      - templates\n      - team/templates\n", 1)
	files["team/journeys/winback.yaml"] = `id: winback
trigger:
  event: Order Completed
steps:
  - id: thanks
    send: {channel: email, template: winback_offer}
`
	files["team/templates/winback_offer.yaml"] = "subject: We miss you\n"
	files["team/templates/winback_offer.html"] = "<p>We miss you</p>\n"
	files["team/templates/winback_offer.txt"] = "We miss you\n"
	return files
}

// TestSeveralFolders is issue 20's item 8: journeys and email templates
// come from a list of folders, for validate, simulate and serve alike
// (all three compile through compileDefinitions), and an id in two
// folders is an error naming both files.
func TestSeveralFolders(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, teamFolder())
	config := filepath.Join(dir, "cartera.yaml")

	t.Run("validate", func(t *testing.T) {
		stdout, stderr, err := runValidate(t, "--config", config)
		if err != nil {
			t.Fatalf("validate: %v\n%s", err, stderr)
		}
		if !strings.Contains(stdout, "2 journey(s)") {
			t.Errorf("stdout = %q, want both folders' journeys", stdout)
		}
	})
	t.Run("serve's definitions", func(t *testing.T) {
		cfg, err := loadConfig(&serveFlags{config: config, set: map[string]bool{"config": true}}, envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		defs, err := compileDefinitions(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range defs.journeys.Journeys {
			ids = append(ids, j.ID)
		}
		if !slices.Equal(ids, []string{"review", "winback"}) {
			t.Errorf("journeys = %v", ids)
		}
		if !slices.Contains(defs.templates, "winback_offer") || !slices.Contains(defs.templates, "review_request") {
			t.Errorf("templates = %v", defs.templates)
		}
	})
	t.Run("simulate", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: envOf(nil)}
		err := m.Run(context.Background(), []string{"simulate", "--config", config, "--events", filepath.Join(dir, "events.ndjson")})
		if err != nil {
			t.Fatalf("simulate: %v\n%s", err, stderr.String())
		}
		for _, want := range []string{`"journey":"review","step":"","action":"enter"`, `"journey":"winback","step":"","action":"enter"`} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("simulate output lacks %s:\n%s", want, stdout.String())
			}
		}
	})
	t.Run("CARTERA_JOURNEYS takes a list too", func(t *testing.T) {
		env := envOf(map[string]string{"CARTERA_JOURNEYS": filepath.Join(dir, "journeys") + "," + filepath.Join(dir, "team/journeys")})
		cfg, err := loadConfig(&serveFlags{set: map[string]bool{}}, env)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Journeys) != 2 {
			t.Errorf("journeys = %q", cfg.Journeys)
		}
	})

	dupes := []struct {
		name, file, body, want string
	}{
		{"journey id", "team/journeys/review_copy.yaml", "id: review\ntrigger:\n  event: Order Completed\nsteps:\n  - id: a\n    send: {channel: email, template: review_request}\n",
			`DIR/team/journeys/review_copy.yaml:1:1: journey: journey id "review" is also used by DIR/journeys/review.yaml`},
		{"template id", "team/templates/review_request.yaml", "subject: Again\n",
			"DIR/team/templates/review_request.yaml:1:1: email template: template review_request is also in DIR/templates/review_request.yaml"},
	}
	for _, tc := range dupes {
		t.Run("the same "+tc.name+" in two folders", func(t *testing.T) {
			dir := t.TempDir()
			files := teamFolder()
			files[tc.file] = tc.body
			if strings.HasSuffix(tc.file, "review_request.yaml") {
				files["team/templates/review_request.html"] = "<p>Again</p>\n"
				files["team/templates/review_request.txt"] = "Again\n"
			}
			writeTree(t, dir, files)
			_, stderr, err := runValidate(t, "--config", filepath.Join(dir, "cartera.yaml"))
			if err == nil {
				t.Fatal("validate passed")
			}
			if want := strings.ReplaceAll(tc.want, "DIR", dir); !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
			// serve refuses to start on the same files.
			var out bytes.Buffer
			m := &Main{Stdout: &out, Stderr: &out, Getenv: envOf(nil)}
			err = m.Run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", filepath.Join(dir, "cartera.yaml")})
			if err == nil || !strings.Contains(err.Error(), "is also") {
				t.Errorf("serve: err = %v, want the duplicate named", err)
			}
		})
	}
}
