package journeys

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

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

// LoadFiles reads and compiles journey files, several at a time (one per
// CPU: compiling CEL is CPU-bound and the environment is shared safely);
// journeys and errors come back in the order of paths.
func LoadFiles(paths []string, env *rules.Env, known Known) ([]*Journey, error) {
	type result struct {
		j   *Journey
		err error
	}
	results := make([]result, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(paths)) {
		wg.Go(func() {
			for i := range next {
				b, err := os.ReadFile(paths[i])
				if err != nil {
					results[i].err = rules.FileErrors{{File: paths[i], Line: 1, Col: 1, Msg: err.Error()}}
					continue
				}
				results[i].j, results[i].err = Parse(paths[i], b, env, known)
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()

	var out []*Journey
	var errs rules.FileErrors
	for _, r := range results {
		var fe rules.FileErrors
		switch {
		case errors.As(r.err, &fe):
			errs = append(errs, fe...)
		case r.err != nil:
			return nil, r.err
		default:
			out = append(out, r.j)
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
