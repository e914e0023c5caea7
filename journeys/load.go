package journeys

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cartera/rules"
)

// LoadDir reads and compiles every journey file (*.yaml, *.yml) in dir.
// All mistakes of all files come back together as rules.FileErrors.
func LoadDir(dir string, env *rules.Env, known Known) ([]*Journey, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, rules.FileErrors{{File: dir, Line: 1, Col: 1, Msg: err.Error()}}
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(paths)
	return LoadFiles(paths, env, known)
}

// LoadFiles reads and compiles journey files.
func LoadFiles(paths []string, env *rules.Env, known Known) ([]*Journey, error) {
	var out []*Journey
	var errs rules.FileErrors
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, &rules.FileError{File: p, Line: 1, Col: 1, Msg: err.Error()})
			continue
		}
		j, err := Parse(p, b, env, known)
		var fe rules.FileErrors
		switch {
		case errors.As(err, &fe):
			errs = append(errs, fe...)
		case err != nil:
			return nil, err
		default:
			out = append(out, j)
		}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

// IsJourneyFile reports whether YAML bytes look like a journey file (they
// have a top-level steps key), so validate can tell journeys from rules.
func IsJourneyFile(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "steps:") || strings.HasPrefix(line, "trigger:") {
			return true
		}
	}
	return false
}

// IsPolicyFile reports whether YAML bytes are a policies file.
func IsPolicyFile(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "policies:") {
			return true
		}
	}
	return false
}
