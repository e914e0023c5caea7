package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// emittedEventDirs are the packages whose code records events on
// profiles: the engines, the channels and the wallet.
var emittedEventDirs = []string{"profiles", "rules", "journeys", "channels", "wallet"}

// emittedEvents finds, with the Go parser, every event name the code
// writes down: an `Event: "Name"` field of a composite literal (a
// profiles.Event or a channels.Outcome), and a string constant named
// Event* (rules.EventAudienceEntered, wallet.EventPassUpdated, ...). Test
// files are left out.
func emittedEvents(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{} // name → where
	fset := token.NewFileSet()
	for _, dir := range emittedEventDirs {
		err := filepath.WalkDir(filepath.Join("../..", dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			add := func(lit ast.Expr) {
				bl, ok := lit.(*ast.BasicLit)
				if !ok || bl.Kind != token.STRING {
					return
				}
				if name, err := strconv.Unquote(bl.Value); err == nil && name != "" {
					if _, seen := found[name]; !seen {
						found[name] = fset.Position(bl.Pos()).String()
					}
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.KeyValueExpr:
					if id, ok := n.Key.(*ast.Ident); ok && id.Name == "Event" {
						add(n.Value)
					}
				case *ast.GenDecl:
					if n.Tok != token.CONST {
						return true
					}
					for _, spec := range n.Specs {
						vs := spec.(*ast.ValueSpec)
						for i, name := range vs.Names {
							if strings.HasPrefix(name.Name, "Event") && i < len(vs.Values) {
								add(vs.Values[i])
							}
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// TestEmittedEventsDocumented is issue 20's item 9: every event name the
// code records is documented under "Events Cartera records" in the README,
// as a heading of its own.
func TestEmittedEventsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Events Cartera records\n")
	if start < 0 {
		t.Fatal(`README has no "## Events Cartera records" section`)
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	headings := map[string]bool{}
	for line := range strings.SplitSeq(section, "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			headings[strings.Trim(h, "` ")] = true
		}
	}
	found := emittedEvents(t)
	if len(found) < 10 {
		t.Fatalf("found only %d event names in the code (%v): the scan is broken", len(found), found)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range found {
			if !yield(n) {
				return
			}
		}
	}) {
		if !headings[name] {
			t.Errorf("%s records %q, which the README's \"Events Cartera records\" does not document (want a \"### %s\" heading)", found[name], name, name)
		}
	}
}
