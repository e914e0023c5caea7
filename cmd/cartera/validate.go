package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"cartera/channels/email"
	"cartera/channels/sms"
	"cartera/rules"
	"cartera/wallet"
)

// The kinds of file validate knows; each error names the kind of file it
// is about.
const (
	kindConfig        = "config"
	kindRules         = "rules"
	kindPolicies      = "policies"
	kindJourney       = "journey"
	kindEmailTemplate = "email template"
	kindSMSTemplate   = "sms template"
	kindPassTemplate  = "pass template"
)

// validate checks the files the config names and those PATHs hold: every
// error as file:line:col: kind: message, exit 1 on any. What a file is
// comes first from the config (its journeys folders, rules files,
// policies file, template folders, pass templates, the config itself);
// a file the config does not name is recognised by its top-level keys;
// anything else is skipped, with a note saying so.
func (m *Main) validate(ctx context.Context, args []string) error {
	fset := newCommandFlags("validate")
	configPath := fset.String("config", "", "YAML config whose files are checked with PATHs (default examples/cartera.yaml when present)")
	if err := fset.parse(m, args, true); err != nil {
		return err
	}
	cfg, err := loadConfig(fset.visited(&serveFlags{config: *configPath}), m.Getenv)
	if err != nil {
		return err
	}
	files := newFileKinds(cfg)
	var extra extraFiles
	var templateDirs, passDirs, configs, skipped []string
	var errs rules.FileErrors
	paths, err := listPaths(fset.Args())
	if err != nil {
		return err
	}
	for _, p := range paths {
		if files.of(p) != "" {
			continue // the config's, checked with it
		}
		kind, why := sniff(p)
		switch kind {
		case "":
			skipped = append(skipped, p+": skipped: "+why)
			continue
		case kindJourney:
			extra.journeys = append(extra.journeys, p)
		case kindRules:
			cfg.Rules = append(cfg.Rules, p)
		case kindPolicies:
			cfg.Policies = p // replaces the config's, as a draft would
		case kindConfig:
			configs = append(configs, p)
		case kindEmailTemplate:
			if !slices.Contains(templateDirs, filepath.Dir(p)) {
				templateDirs = append(templateDirs, filepath.Dir(p))
			}
			files.dirs[abs(filepath.Dir(p))] = kindEmailTemplate
		case kindPassTemplate:
			passDirs = append(passDirs, filepath.Dir(p))
			files.trees[abs(filepath.Dir(p))] = kindPassTemplate
		case "invalid":
			errs = append(errs, &rules.FileError{File: p, Line: 1, Col: 1, Msg: why})
			continue
		}
		files.exact[abs(p)] = kind
	}
	// Non-YAML parts of a template folder found above (.html, .txt,
	// images) are checked with it; the rest are skipped.
	n := 0
	for _, s := range skipped {
		p, _, _ := strings.Cut(s, ": skipped: ")
		if files.of(p) == "" {
			skipped[n] = s
			n++
		}
	}
	skipped = skipped[:n]

	for _, dir := range templateDirs {
		t, err := email.LoadTemplates(dir, "en")
		var fe rules.FileErrors
		if errors.As(err, &fe) {
			errs = append(errs, fe...)
		} else if err != nil {
			return err
		} else {
			extra.templates = append(extra.templates, t.Names()...)
		}
	}
	for _, c := range configs {
		errs = append(errs, checkConfigFile(c)...)
	}
	defs, err := compileWith(cfg, extra)
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		errs = append(errs, fe...)
	} else if err != nil {
		return err
	}
	if defs != nil {
		for _, dir := range passDirs {
			if _, perr := wallet.LoadTemplate(dir, defs.rules.Env); perr != nil {
				if !errors.As(perr, &fe) {
					return perr
				}
				errs = append(errs, fe...)
			}
		}
	}
	for _, s := range skipped {
		fmt.Fprintln(m.Stderr, s)
	}
	nfiles := files.count()
	if nfiles == 0 {
		return &usageError{"validate: no files: give PATHs or a config that names rule and journey files"}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			if k := files.of(e.File); k != "" {
				fmt.Fprintf(m.Stderr, "%s:%d:%d: %s: %s\n", e.File, e.Line, e.Col, k, e.Msg)
			} else {
				fmt.Fprintln(m.Stderr, e.Error())
			}
		}
		fmt.Fprintf(m.Stderr, "%d error(s) in %d file(s)\n", len(errs), nfiles)
		return errReported
	}
	fmt.Fprintf(m.Stdout, "ok: %d file(s), %d computed trait(s), %d audience(s), %d journey(s)%s\n", nfiles,
		len(defs.rules.Traits), len(defs.rules.Audiences), len(defs.journeys.Journeys), skippedNote(len(skipped)))
	return nil
}

// yamlErrLine is one message of a yaml.v3 error: "line 2: message".
var yamlErrLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// notInConfig is yaml.v3's word for a key Config does not have.
var notInConfig = regexp.MustCompile(`^field (\S+) not found in type main\.Config$`)

// checkConfigFile reads a config validate was given besides --config,
// each mistake at its line.
func checkConfigFile(path string) rules.FileErrors {
	b, err := os.ReadFile(path)
	if err != nil {
		return rules.FileErrors{{File: path, Line: 1, Col: 1, Msg: err.Error()}}
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(&cfg)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		return nil
	}
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out rules.FileErrors
	for _, msg := range msgs {
		fe := &rules.FileError{File: path, Line: 1, Col: 1, Msg: msg}
		if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
			fe.Line, _ = strconv.Atoi(m[1])
			fe.Msg = m[2]
			if u := notInConfig.FindStringSubmatch(fe.Msg); u != nil {
				fe.Msg = fmt.Sprintf("unknown field %q", u[1])
			}
		}
		out = append(out, fe)
	}
	return out
}

func skippedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d skipped", n)
}

// fileKinds says what each file is: first what the config names, then
// what validate recognised.
type fileKinds struct {
	exact map[string]string // absolute file → kind
	dirs  map[string]string // absolute folder → kind of the files right in it
	trees map[string]string // absolute folder → kind of every file under it
	// listed are the config's files, counted in the summary.
	listed map[string]bool
}

func newFileKinds(cfg *Config) *fileKinds {
	k := &fileKinds{exact: map[string]string{}, dirs: map[string]string{}, trees: map[string]string{}, listed: map[string]bool{}}
	if cfg.path != "" {
		k.exact[abs(cfg.path)] = kindConfig
	}
	for _, r := range cfg.Rules {
		k.exact[abs(r)] = kindRules
	}
	if cfg.Policies != "" {
		k.exact[abs(cfg.Policies)] = kindPolicies
	}
	for _, d := range cfg.Journeys {
		k.dirs[abs(d)] = kindJourney
	}
	for _, d := range cfg.Channels.Email.Templates {
		k.dirs[abs(d)] = kindEmailTemplate
	}
	if d := cfg.Channels.SMS.Templates; d != "" {
		k.dirs[abs(d)] = kindSMSTemplate
	}
	if d := cfg.Wallet.Templates; d != "" {
		k.trees[abs(d)] = kindPassTemplate
	}
	// The config's own files, for the count.
	for p := range k.exact {
		k.listed[p] = true
	}
	for d, kind := range k.dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if !e.IsDir() && ownsFile(kind, e.Name()) {
				k.listed[filepath.Join(d, e.Name())] = true
			}
		}
	}
	for d := range k.trees {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && e.Name() == wallet.TemplateFile {
				k.listed[p] = true
			}
			return nil
		})
	}
	return k
}

// ownsFile reports whether a folder of a kind reads a file of that name.
func ownsFile(kind, name string) bool {
	switch kind {
	case kindJourney:
		return isYAML(name)
	case kindEmailTemplate:
		return isYAML(name) || strings.HasSuffix(name, ".html") || strings.HasSuffix(name, ".txt")
	case kindSMSTemplate:
		return strings.HasSuffix(name, sms.FileSuffix)
	}
	return true
}

// of returns the kind of a file (or folder), "" when unknown.
func (k *fileKinds) of(path string) string {
	a := abs(path)
	if kind, ok := k.exact[a]; ok {
		return kind
	}
	if kind, ok := k.dirs[a]; ok {
		return kind // the folder itself, in an error about it
	}
	if kind, ok := k.dirs[filepath.Dir(a)]; ok && ownsFile(kind, filepath.Base(a)) {
		return kind
	}
	for d := a; ; {
		if kind, ok := k.trees[d]; ok {
			return kind
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// count is the number of files checked: the config's and those found.
func (k *fileKinds) count() int {
	n := len(k.listed)
	for p := range k.exact {
		if !k.listed[p] {
			n++
		}
	}
	return n
}

// configKeys are the top-level keys of a config file.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

// sniff tells what a file the config does not name is by its name and
// top-level keys; "" with the reason when it is none of validate's kinds,
// "invalid" with the reason when it cannot be read as YAML.
func sniff(path string) (kind, why string) {
	const none = "not a journey, rule, policy or template file"
	if filepath.Base(path) == wallet.TemplateFile {
		return kindPassTemplate, ""
	}
	if !isYAML(path) {
		return "", none
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "invalid", err.Error()
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return "invalid", "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return "", none
	}
	top := root.Content[0]
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		keys[top.Content[i].Value] = top.Content[i+1]
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := keys[n]; ok {
				return true
			}
		}
		return false
	}
	cfgKeys := configKeys()
	switch {
	case has("subject", "preheader"):
		return kindEmailTemplate, ""
	case has("steps", "trigger"):
		return kindJourney, ""
	case has("computed_traits", "audiences"):
		return kindRules, ""
	case has("policies") && keys["policies"].Kind == yaml.MappingNode:
		return kindPolicies, ""
	}
	for k := range keys {
		if cfgKeys[k] {
			return kindConfig, ""
		}
	}
	return "", none
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// listPaths lists the given files and every file under each folder
// (hidden ones left out), each once, in order.
func listPaths(paths []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if a := abs(p); !seen[a] {
			seen[a] = true
			out = append(out, p)
		}
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
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() {
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
