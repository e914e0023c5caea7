package main

// What a reload changes: the journey, rule and policies files in force
// (their text as compiled, kept in the definitions) against those a new
// compile read, file by file, as line diffs. The console's reload page
// and POST /v1/journeys/reload (with or without dry_run) show them.

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"cartera/cmd/cartera/console"
)

// definitionFile is one file the definitions were compiled from.
type definitionFile struct {
	kind string
	text []byte
}

// files are the journey, rule and policies files of the definitions, by
// absolute path, with the text compiled.
func (d *definitions) files() map[string]definitionFile {
	out := map[string]definitionFile{}
	if d == nil {
		return out
	}
	for _, s := range d.rules.Sources {
		out[abs(s.Name)] = definitionFile{kind: "rules", text: s.Data}
	}
	if d.policy != nil && d.policy.File != "" {
		out[abs(d.policy.File)] = definitionFile{kind: "policies", text: d.policy.Source}
	}
	for _, j := range d.journeys.Journeys {
		out[abs(j.File)] = definitionFile{kind: "journey", text: j.Source}
	}
	return out
}

// fileChanges compares the files of before with those of after, in file
// order; paths are shown relative to base (the config's folder) when
// inside it.
func fileChanges(before, after *definitions, base string) []console.FileChange {
	old, cur := before.files(), after.files()
	paths := map[string]bool{}
	for p := range old {
		paths[p] = true
	}
	for p := range cur {
		paths[p] = true
	}
	var out []console.FileChange
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		o, inOld := old[p]
		n, inNew := cur[p]
		var ob, nb []byte
		kind := n.kind
		if inOld {
			ob = nonNil(o.text)
			kind = o.kind
		}
		if inNew {
			nb = nonNil(n.text)
			kind = n.kind
		}
		if fc := console.NewFileChange(shownPath(p, base), kind, ob, nb); fc != nil {
			out = append(out, *fc)
		}
	}
	return out
}

// nonNil keeps an empty file apart from a missing one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func shownPath(p, base string) string {
	if base == "" {
		return p
	}
	rel, err := filepath.Rel(base, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return p
	}
	return rel
}

// configDir is the folder the config file's paths are relative to ("" when
// serve runs without a config file).
func (a *app) configDir() string { return configDir(a.cfg) }

// configDir is the folder of cfg's file ("" for none).
func configDir(cfg *Config) string {
	if cfg.path == "" {
		return ""
	}
	return abs(filepath.Dir(cfg.path))
}

// inForce returns the definitions in force.
func (a *app) inForce() *definitions {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.defs
}

// reloadResult is a reload's (or a dry run's) answer: the journeys'
// versions after it and the files it changes.
type reloadResult struct {
	versions []journeyVersion
	changes  []console.FileChange
}

type journeyVersion struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

func newReloadResult(before, after *definitions, base string) *reloadResult {
	r := &reloadResult{changes: fileChanges(before, after, base)}
	for _, j := range after.journeys.Journeys {
		r.versions = append(r.versions, journeyVersion{ID: j.ID, Version: j.Version})
	}
	return r
}

// reloadOrCheck reloads, or with dryRun compiles the files and checks
// them as a reload would, changing nothing; either way it says which
// files differ from those in force.
func (a *app) reloadOrCheck(ctx context.Context, dryRun bool) (*reloadResult, error) {
	if dryRun {
		before := a.inForce()
		after, err := a.checkReload()
		if err != nil {
			return nil, err
		}
		return newReloadResult(before, after, a.configDir()), nil
	}
	before, after, err := a.reloadFrom(ctx)
	if err != nil {
		return nil, err
	}
	return newReloadResult(before, after, a.configDir()), nil
}

// checkReload is the part of a reload that writes nothing: the files
// compile together, and the wallet accepts the pass templates.
func (a *app) checkReload() (*definitions, error) {
	defs, err := compileDefinitions(a.cfg)
	if err != nil {
		return nil, err
	}
	if a.wallet != nil && defs.passes != nil {
		if err := a.wallet.CheckTemplates(defs.passes); err != nil {
			return nil, err
		}
	}
	return defs, nil
}
