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

	"cartera/channels/email"
	"cartera/journeys"
	"cartera/rules"
	"cartera/wallet"
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
	paths, err := yamlFiles(nil, fset.Args())
	if err != nil {
		return err
	}
	// Sort what PATHs hold by kind; the config's own files are checked
	// with them, so a journey may use an audience of the config's rules.
	ruleList, journeyList := slices.Clone(cfg.Rules), []string{}
	var configs, templateDirs, passDirs []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		switch {
		case filepath.Base(p) == wallet.TemplateFile:
			passDirs = append(passDirs, filepath.Dir(p))
		case isTemplateFile(b):
			if dir := filepath.Dir(p); !slices.Contains(templateDirs, dir) {
				templateDirs = append(templateDirs, dir)
			}
		case journeys.IsPolicyFile(b):
			cfg.Policies = p
		case journeys.IsJourneyFile(b):
			journeyList = append(journeyList, p)
		case isConfigFile(b):
			configs = append(configs, p)
		default:
			ruleList = append(ruleList, p)
		}
	}
	ruleList, _ = yamlFiles(ruleList, nil)
	if cfg.Journeys != "" {
		dirFiles, err := yamlFiles(nil, []string{cfg.Journeys})
		if err != nil {
			return err
		}
		journeyList = append(dirFiles, journeyList...)
	}
	journeyList, _ = yamlFiles(journeyList, nil)
	var errs rules.FileErrors
	for _, dir := range templateDirs {
		if abs(dir) == abs(cfg.Channels.Email.Templates) {
			continue // checked with the config's definitions
		}
		if _, err := email.LoadTemplates(dir, "en"); err != nil {
			var fe rules.FileErrors
			if !errors.As(err, &fe) {
				return err
			}
			errs = append(errs, fe...)
		}
	}
	for _, c := range configs {
		check := DefaultConfig()
		if err := readConfigFile(c, &check); err != nil {
			errs = append(errs, &rules.FileError{File: c, Line: 1, Col: 1, Msg: err.Error()})
		}
	}
	cfg.Rules, cfg.Journeys = ruleList, ""
	defs, err := compileDefinitions(cfg)
	var js []*journeys.Journey
	if err == nil {
		known := knownNames(defs.rules, defs.policy, defs.templates)
		known.PassTemplates = passTemplateNames(defs.passes)
		for _, dir := range passDirs {
			if _, ok := defs.passes[filepath.Base(dir)]; ok && abs(filepath.Dir(dir)) == abs(cfg.Wallet.Templates) {
				continue // checked with the config's definitions
			}
			if _, perr := wallet.LoadTemplate(dir, defs.rules.Env); perr != nil {
				var fe rules.FileErrors
				if !errors.As(perr, &fe) {
					return perr
				}
				errs = append(errs, fe...)
			}
		}
		js, err = journeys.LoadFiles(journeyList, defs.rules.Env, known)
	}
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		errs = append(errs, fe...)
	} else if err != nil {
		return err
	}
	if err == nil {
		if _, err := journeys.NewSet(js, defs.policy); errors.As(err, &fe) {
			errs = append(errs, fe...)
		}
	}
	nfiles := len(ruleList) + len(journeyList) + len(configs) + len(passDirs)
	if cfg.Policies != "" {
		nfiles++
	}
	if nfiles == 0 {
		return &usageError{"validate: no files: give PATHs or a config that names rule and journey files"}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(m.Stderr, e.Error())
		}
		fmt.Fprintf(m.Stderr, "%d error(s) in %d file(s)\n", len(errs), nfiles)
		return errReported
	}
	fmt.Fprintf(m.Stdout, "ok: %d file(s), %d computed trait(s), %d audience(s), %d journey(s)\n", nfiles, len(defs.rules.Traits), len(defs.rules.Audiences), len(js))
	return nil
}

// isTemplateFile reports whether YAML bytes are an email template's
// subject file.
func isTemplateFile(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "subject:") {
			return true
		}
	}
	return false
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// isConfigFile reports whether YAML bytes are a cartera config.
func isConfigFile(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"sources:", "addr:", "rules:", "admin_token:", "profiles:"} {
			if strings.HasPrefix(line, k) {
				return true
			}
		}
	}
	return false
}

// yamlFiles lists the given files and the YAML files under each PATH,
// each once.
func yamlFiles(fromConfig, paths []string) ([]string, error) {
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
