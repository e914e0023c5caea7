package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// copyDir copies the examples so a test can edit journey files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestJourneysAPIAndReload(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, "../../examples", dir)
	addr := make(chan string, 1)
	vars := map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken}
	withTestClock(t, vars)
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(vars), OnListen: func(a string) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "c.db"), "--config", filepath.Join(dir, "cartera.yaml")})
	}()
	var s *server
	select {
	case a := <-addr:
		s = &server{base: "http://" + a}
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(startTimeout):
		t.Fatal("no start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// A shopper who is not a priority one is in the reminder timing
	// experiment, in an arm drawn from their (random) profile id: each arm
	// waits at another step; the control does not wait at all, so the test
	// takes shoppers until one is not in it.
	var j reply
	var anon, arm string
	arms := map[string]float64{}
	for i := 1; arm == "" || arm == "control"; i++ {
		if i > 30 {
			t.Fatal("30 shoppers in the control group")
		}
		anon = fmt.Sprintf("j-%d", i)
		mustOK(t, s.send(t, "app_dev_write_key", "/v1/track", `{"anonymousId":"`+anon+`","event":"Product Added","properties":{"cart_id":"c9"}}`))
		j = s.admin(t, "GET", "/v1/journeys/cart_abandonment")
		if j.status != 200 {
			t.Fatalf("journey: %d %s", j.status, j.raw)
		}
		exps := j.body["experiments"].([]any)
		if len(exps) != 1 {
			t.Fatalf("experiments = %v, want the reminder timing split", exps)
		}
		exp := exps[0].(map[string]any)
		if exp["name"] != "reminder_timing" || exp["kind"] != "split" || exp["window"] != "7d" {
			t.Fatalf("experiment = %v", exp)
		}
		arm = ""
		total := 0.0
		for _, v := range exp["variants"].([]any) {
			v := v.(map[string]any)
			name, n := v["name"].(string), v["assigned"].(float64)
			if n == arms[name]+1 {
				arm = name
			}
			arms[name] = n
			total += n
		}
		if arm == "" || total != float64(i) {
			t.Fatalf("after %d shoppers the experiment is %v", i, exp)
		}
		sum := j.body["journey"].(map[string]any)
		if sum["entered"] != float64(i) || sum["waiting"] != float64(i)-arms["control"] {
			t.Fatalf("summary = %v after %d shoppers, %v in the control", sum, i, arms["control"])
		}
	}
	waitsAt := map[string]string{"half_hour": "idle", "at_once": "opened"}[arm]
	steps := j.body["steps"].([]any)
	var at map[string]any
	for _, st := range steps {
		if st.(map[string]any)["id"] == waitsAt {
			at = st.(map[string]any)
		}
	}
	if at == nil || at["counts"].(map[string]any)["waiting"] != 1.0 {
		t.Fatalf("steps = %v, want one waiting at %s (arm %s)", steps, waitsAt, arm)
	}
	sum := j.body["journey"].(map[string]any)
	p := s.admin(t, "GET", "/v1/profiles/anonymous_id:"+anon)
	insts := p.body["journeys"].([]any)
	if len(insts) != 1 || insts[0].(map[string]any)["journey"] != "cart_abandonment" || insts[0].(map[string]any)["key"] != "c9" || insts[0].(map[string]any)["variant"] != arm {
		t.Fatalf("profile journeys = %v, want one in %s", insts, arm)
	}
	list := s.admin(t, "GET", "/v1/journeys")
	if n := len(list.body["journeys"].([]any)); n < 3 {
		t.Fatalf("journeys listed = %d", n)
	}
	oldVersion := sum["version"]

	// A broken file never replaces the running version.
	path := filepath.Join(dir, "journeys", "cart_abandonment.yaml")
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(good), "channel: email", "channel: pigeon", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.admin(t, "POST", "/v1/journeys/reload")
	if r.status != 400 || !strings.Contains(r.raw, `cart_abandonment.yaml:`) || !strings.Contains(r.raw, `unknown channel \"pigeon\"`) {
		t.Fatalf("broken reload: %d %s", r.status, r.raw)
	}
	if v := s.admin(t, "GET", "/v1/journeys/cart_abandonment").body["journey"].(map[string]any)["version"]; v != oldVersion {
		t.Fatalf("version after a refused reload = %v, want %v", v, oldVersion)
	}
	// A good edit makes a new version; the running instance keeps its own.
	if err := os.WriteFile(path, []byte(strings.Replace(string(good), "wait: 30m", "wait: 20m", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.admin(t, "POST", "/v1/journeys/reload"); r.status != 200 || r.body["success"] != true {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	nv := s.admin(t, "GET", "/v1/journeys/cart_abandonment").body["journey"].(map[string]any)["version"]
	if nv == oldVersion {
		t.Fatal("edit did not make a new version")
	}
	inst := s.admin(t, "GET", "/v1/profiles/anonymous_id:"+anon).body["journeys"].([]any)[0].(map[string]any)
	if inst["version"] != oldVersion {
		t.Fatalf("running instance moved to version %v, want %v", inst["version"], oldVersion)
	}
	if r := s.admin(t, "GET", "/v1/journeys/nope"); r.status != 404 {
		t.Fatalf("unknown journey: %d", r.status)
	}
}
