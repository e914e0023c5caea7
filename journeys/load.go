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
	return LoadDirs([]string{dir}, env, known)
}

// LoadDirs reads and compiles the journey files of several folders, in
// the order given; a folder given twice is read once. A journey id used
// in two files is reported by NewSet, naming both.
func LoadDirs(dirs []string, env *rules.Env, known Known) ([]*Journey, error) {
	paths, err := Files(dirs)
	if err != nil {
		return nil, err
	}
	return LoadFiles(paths, env, known)
}

// Files lists the journey files (*.yaml, *.yml) of folders, sorted within
// each folder; a folder that cannot be read is a rules.FileErrors naming it.
func Files(dirs []string) ([]string, error) {
	var paths []string
	var errs rules.FileErrors
	seen := map[string]bool{}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		key := dir
		if a, err := filepath.Abs(dir); err == nil {
			key = a
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, &rules.FileError{File: dir, Line: 1, Col: 1, Msg: err.Error()})
			continue
		}
		var found []string
		for _, e := range entries {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
				found = append(found, filepath.Join(dir, e.Name()))
			}
		}
		slices.Sort(found)
		paths = append(paths, found...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return paths, nil
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
