package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cartera/rules"
)

// validate checks rule files (and, through the config, those production
// loads): every error as file:line:col: message, exit 1 on any.
func (m *Main) validate(ctx context.Context, args []string) error {
	var flagErr bytes.Buffer
	fset := flag.NewFlagSet("validate", flag.ContinueOnError)
	fset.SetOutput(&flagErr)
	configPath := fset.String("config", "", "YAML config whose rule files are checked with PATHs (default examples/cartera.yaml when present)")
	if err := fset.Parse(args); err != nil {
		_, _ = io.Copy(m.Stderr, &flagErr)
		return &usageError{err.Error()}
	}
	f := &serveFlags{config: *configPath, set: map[string]bool{}}
	fset.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	cfg, err := loadConfig(f, m.Getenv)
	if err != nil {
		return err
	}
	files, err := ruleFiles(cfg.Rules, fset.Args())
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return &usageError{"validate: no files: give PATHs or a config that names rule files"}
	}
	rs, err := loadRules(files)
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		for _, e := range fe {
			fmt.Fprintln(m.Stderr, e.Error())
		}
		fmt.Fprintf(m.Stderr, "%d error(s) in %d file(s)\n", len(fe), len(files))
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "ok: %d file(s), %d computed trait(s), %d audience(s)\n", len(files), len(rs.Traits), len(rs.Audiences))
	return nil
}

// ruleFiles lists the config's rule files and the YAML files under each
// PATH, each once.
func ruleFiles(fromConfig, paths []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = p
		}
		if !seen[abs] {
			seen[abs] = true
			out = append(out, p)
		}
	}
	for _, p := range fromConfig {
		add(p)
	}
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("validate: %w", err)
		}
		if !info.IsDir() {
			add(p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("validate: %w", err)
		}
		slices.Sort(found)
		for _, f := range found {
			add(f)
		}
	}
	return out, nil
}

// loadRules reads and compiles rule files together, so an audience may use
// a trait declared in another file.
func loadRules(files []string) (*rules.Ruleset, error) {
	return rules.Load(rules.EnvOptions{}, files...)
}
