package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse and Compile, seeded with the
// example rule files and every file under testdata: neither may panic, and
// every mistake must be a FileError that points into the file.
//
//	go test -run '^$' -fuzz FuzzParse ./rules
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{
		filepath.Join("..", "examples", "rules", "*.yaml"),
		filepath.Join("testdata", "*.yaml"),
		filepath.Join("testdata", "*", "*.yaml"),
	} {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, paths...)
	}
	if len(seeds) == 0 {
		f.Fatal("no seed files")
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(engineRules))
	f.Add([]byte("audiences:\n  - name: a\n    expression: >\n      profile.traits.vip ==\n      true\n"))
	f.Add([]byte("computed_traits:\n  - name: a\n    aggregate: count\n    where: |\n\n      event.timestamp > 1\n"))

	f.Fuzz(func(t *testing.T, b []byte) {
		const name = "fuzz.yaml"
		specs, err := Parse(name, b)
		checkFileErrors(t, "Parse", name, err)
		if specs == nil {
			if err == nil {
				t.Fatal("Parse returned neither specs nor an error")
			}
			return
		}
		rs, err := Compile(specs, EnvOptions{})
		checkFileErrors(t, "Compile", name, err)
		if err == nil && rs == nil {
			t.Fatal("Compile returned neither a ruleset nor an error")
		}
	})
}

func checkFileErrors(t *testing.T, what, name string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var errs FileErrors
	if !errors.As(err, &errs) {
		t.Fatalf("%s: %T %v, want FileErrors", what, err, err)
	}
	if len(errs) == 0 {
		t.Fatalf("%s: empty FileErrors", what)
	}
	for _, e := range errs {
		if e.File != name || e.Line < 1 || e.Col < 1 || e.Msg == "" {
			t.Errorf("%s: bad error %q (file %q, line %d, col %d)", what, e.Error(), e.File, e.Line, e.Col)
		}
	}
	_ = errs.Error()
}
