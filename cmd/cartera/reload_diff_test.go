package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// POST /v1/journeys/reload?dry_run=true says which files a reload would
// change, each with its line diff, and changes nothing; the reload then
// says the same and puts them in force; a second reload changes no file.
func TestReloadDiffAPI(t *testing.T) {
	r := startConsole(t, nil)
	edit := func(rel, from, to string) {
		t.Helper()
		p := filepath.Join(r.dir, rel)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), from, to, 1)
		if s == string(b) {
			t.Fatalf("%s does not say %q", rel, from)
		}
		write(t, p, s)
	}
	version := func() any {
		t.Helper()
		return r.admin(t, "GET", "/v1/journeys/cart_abandonment").body["journey"].(map[string]any)["version"]
	}
	oldVersion := version()
	edit("journeys/cart_abandonment.yaml", "name: Cart abandonment recovery\n", "name: Cart recovery (edited)\n")
	edit("policies.yaml", "{channel: email, max: 2, per: 24h}", "{channel: email, max: 3, per: 24h}")
	write(t, filepath.Join(r.dir, "journeys", "zz_new.yaml"), "id: zz_new\nname: New\ntrigger: {event: Zz}\nsteps:\n  - id: done\n    exit: true\n")
	if err := os.Remove(filepath.Join(r.dir, "journeys", "birthday.yaml")); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		kind, status string
		lines        []string
	}{
		"journeys/cart_abandonment.yaml": {"journey", "changed", []string{"\n-name: Cart abandonment recovery\n", "\n+name: Cart recovery (edited)\n", "\n id: cart_abandonment\n", "@@ -4,"}},
		"policies.yaml":                  {"policies", "changed", []string{"\n-    - {channel: email, max: 2, per: 24h}\n", "\n+    - {channel: email, max: 3, per: 24h}\n"}},
		"journeys/zz_new.yaml":           {"journey", "added", []string{"@@ -0,0 +1,6 @@\n+id: zz_new\n"}},
		"journeys/birthday.yaml":         {"journey", "removed", []string{"\n-id: birthday\n"}},
	}
	check := func(what string, rep reply) {
		t.Helper()
		if rep.status != 200 || rep.body["success"] != true {
			t.Fatalf("%s: %d %s", what, rep.status, rep.raw)
		}
		changes, _ := rep.body["changes"].([]any)
		got := map[string]bool{}
		for _, c := range changes {
			c := c.(map[string]any)
			file, diff := c["file"].(string), c["diff"].(string)
			got[file] = true
			w, ok := want[file]
			if !ok {
				t.Errorf("%s: %s changes too:\n%s", what, file, diff)
				continue
			}
			if c["kind"] != w.kind || c["status"] != w.status {
				t.Errorf("%s: %s is %v %v, want %s %s", what, file, c["kind"], c["status"], w.kind, w.status)
			}
			if !strings.HasPrefix(diff, "--- in force/"+file+"\n+++ on disk/"+file+"\n") {
				t.Errorf("%s: %s's diff starts %q", what, file, diff[:min(len(diff), 80)])
			}
			for _, l := range w.lines {
				if !strings.Contains(diff, l) {
					t.Errorf("%s: %s's diff lacks %q:\n%s", what, file, l, diff)
				}
			}
		}
		for file := range want {
			if !got[file] {
				t.Errorf("%s: no change listed for %s", what, file)
			}
		}
	}
	dry := r.admin(t, "POST", "/v1/journeys/reload?dry_run=true")
	check("dry run", dry)
	if dry.body["dry_run"] != true {
		t.Errorf("the dry run's answer lacks dry_run: %s", dry.raw)
	}
	if v := version(); v != oldVersion {
		t.Fatalf("a dry run changed the version to %v", v)
	}
	check("reload", r.admin(t, "POST", "/v1/journeys/reload"))
	if v := version(); v == oldVersion {
		t.Fatal("the reload did not make a new version")
	}
	again := r.admin(t, "POST", "/v1/journeys/reload?dry_run=true")
	if changes, ok := again.body["changes"].([]any); again.status != 200 || !ok || len(changes) != 0 {
		t.Errorf("after the reload, a dry run: %d %s, want no change", again.status, again.raw)
	}
	// A broken file: the dry run says a reload would be refused.
	edit("journeys/cart_abandonment.yaml", "channel: email", "channel: pigeon")
	bad := r.admin(t, "POST", "/v1/journeys/reload?dry_run=true")
	if bad.status != 400 || !strings.Contains(bad.raw, "would be refused") || !strings.Contains(bad.raw, `unknown channel \"pigeon\"`) {
		t.Errorf("dry run of a broken file: %d %s", bad.status, bad.raw)
	}
}
