package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// pairCheck is a processor that, at the start of every write transaction,
// checks that the rules and the journeys in force came from one compile:
// the journey file and the rules file of each edit carry the same mark.
type pairCheck struct {
	a          *app
	mismatches atomic.Int64
	begun      atomic.Int64
}

func (c *pairCheck) Begin(*bbolt.Tx) profiles.TxProcessor {
	c.begun.Add(1)
	var rulesMark, journeyMark string
	for _, tr := range c.a.rules.Ruleset().Traits {
		if strings.HasPrefix(tr.Name(), "reload_mark_") {
			rulesMark = strings.TrimPrefix(tr.Name(), "reload_mark_")
		}
	}
	for _, j := range c.a.journeys.Set().Journeys {
		if strings.HasPrefix(j.ID, "reload_mark_") {
			journeyMark = strings.TrimPrefix(j.ID, "reload_mark_")
		}
	}
	if rulesMark != journeyMark {
		c.mismatches.Add(1)
	}
	return pairCheckTx{}
}

type pairCheckTx struct{}

func (pairCheckTx) Event(*profiles.Profile, *profiles.Event) ([]*profiles.Event, error) {
	return nil, nil
}
func (pairCheckTx) Merged(*profiles.Profile, string) error { return nil }
func (pairCheckTx) Erased(*profiles.Profile) error         { return nil }
func (pairCheckTx) Flush() error                           { return nil }
func (pairCheckTx) Done(bool)                              {}

// Reloads run one at a time and put the rules and journeys of one compile
// in force together: no event is applied with the new rules and the old
// journeys, and concurrent reloads never leave a mix behind.
func TestReloadIsSerialisedAndWhole(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, "../../examples", dir)
	rulesFile := filepath.Join(dir, "rules", "reload_mark.yaml")
	journeyFile := filepath.Join(dir, "journeys", "reload_mark.yaml")
	cfgPath := filepath.Join(dir, "cartera.yaml")
	cfgText, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	withMark := bytes.Replace(cfgText, []byte("  - rules/audiences.yaml\n"), []byte("  - rules/audiences.yaml\n  - rules/reload_mark.yaml\n"), 1)
	if bytes.Equal(withMark, cfgText) {
		t.Fatalf("the example config does not list rules/audiences.yaml:\n%s", cfgText)
	}
	write(t, cfgPath, string(withMark))
	mark := func(n int) {
		write(t, rulesFile, fmt.Sprintf("computed_traits:\n  - name: reload_mark_%d\n    expression: \"1\"\n", n))
		write(t, journeyFile, fmt.Sprintf("id: reload_mark_%d\nname: Mark %d\ntrigger: {event: Reload Mark}\nsteps:\n  - id: done\n    exit: true\n", n, n))
	}
	mark(0)
	ctx := context.Background()
	a := openTestApp(t, filepath.Join(dir, "c.db"), cfgPath)
	check := &pairCheck{a: a}
	a.store.Use(check)

	stop := make(chan struct{})
	var ingest sync.WaitGroup
	for w := range 4 {
		ingest.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := &profiles.Event{Type: profiles.TypeTrack, Event: "Reload Mark", UserID: fmt.Sprintf("u%d", w), MessageID: fmt.Sprintf("m-%d-%d", w, i), Source: "web"}
				if _, err := a.store.Ingest(ctx, []*profiles.Event{e}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Files are never edited while any reload reads them, so every
	// compile sees one mark in both files; reloads themselves overlap.
	var edits sync.RWMutex
	reload := func() {
		edits.RLock()
		defer edits.RUnlock()
		if _, err := a.reload(ctx); err != nil {
			t.Error(err)
		}
	}
	var reloads sync.WaitGroup
	for n := 1; n <= 12; n++ {
		reloads.Go(func() {
			edits.Lock()
			mark(n)
			edits.Unlock()
			reload()
		})
		reloads.Go(reload)
	}
	reloads.Wait()
	close(stop)
	ingest.Wait()
	if n := check.mismatches.Load(); n > 0 {
		t.Errorf("%d of %d transactions began with the rules of one reload and the journeys of another", n, check.begun.Load())
	}
	a.mu.Lock()
	d := a.defs
	a.mu.Unlock()
	if a.rules.Ruleset() != d.rules || a.journeys.Set() != d.journeys {
		t.Errorf("after concurrent reloads, the rules or journeys in force are not those of the recorded definitions")
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// openTestApp opens the core of serve (store, rules, journeys) on data
// with the config file at cfgPath, in process; it is closed by t.Cleanup.
func openTestApp(t *testing.T, data, cfgPath string) *app {
	t.Helper()
	f, err := parseServeFlags([]string{"--data", data, "--config", cfgPath}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	defs, err := compileDefinitions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(context.Background(), cfg, defs, appOptions{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.close() })
	return a
}
