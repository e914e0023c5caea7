package rules

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the .golden files under testdata")

// TestLoadErrorsGolden loads each rule file under testdata/bad on its own
// and compares the file:line:col lines with the .golden file next to it.
// Run with -update to rewrite them after a deliberate change, then read
// the diff.
func TestLoadErrorsGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no rule files under testdata/bad")
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			rs, err := Load(EnvOptions{}, path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded with %d traits, %d audiences; want errors", path, len(rs.Traits), len(rs.Audiences))
			}
			var errs FileErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%s) = %T %v, want FileErrors", path, err, err)
			}
			lines := strings.Split(readFile(t, path), "\n")
			for _, e := range errs {
				if e.File != path {
					t.Errorf("error in file %q, want %q: %v", e.File, path, e)
				}
				// Every position is a character of the file, or just past
				// the end of a line (a missing operand at the end).
				if e.Line < 1 || e.Line > len(lines) || e.Col < 1 || e.Col > utf8.RuneCountInString(lines[e.Line-1])+1 {
					t.Errorf("position %d:%d is outside the file: %v", e.Line, e.Col, e)
				}
			}
			got := strings.ReplaceAll(err.Error(), path, filepath.ToSlash(path)) + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readFile(t, golden); got != want {
				t.Errorf("Load(%s) errors:\n%s\nwant (%s):\n%s", path, got, golden, want)
			}
		})
	}
}

// TestErrorPositions checks by the text at each reported position that
// errors point at the mistake itself, not only at its line.
func TestErrorPositions(t *testing.T) {
	tests := []struct {
		file string
		// at is what the file holds at the first error's line:col.
		at string
	}{
		{"cel_syntax_plain.yaml", "> 0"},                                       // the second '>' of '>>'
		{"cel_type_literal_block.yaml", `> "five"`},                            // the operator, on the block's second line
		{"where_mapping_type_error.yaml", "> 1"},                               // inside {expression, message}
		{"event_count_not_literal.yaml", "(profile.traits.favourite_event"},    // the call, in a folded block
		{"expression_trait_order.yaml", ".later"},                              // the undefined field
		{"wrong_aggregate.yaml", "average"},                                    // the value
		{"unknown_field.yaml", "name: orders_count"},                           // the item that lacks an aggregate
		{"duplicate_names.yaml", "name: orders_count\n    aggregate: count\n"}, // the second declaration
		{"sum_without_property.yaml", "name: lifetime_value"},                  // the item
		{"field_given_twice.yaml", "name: shoppers"},                           // the second key
		{"yaml_syntax.yaml", "    event: Order Completed: yes"},                // the line (YAML gives no column)
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			_, err := Load(EnvOptions{}, path)
			var errs FileErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%s) = %v, want FileErrors", path, err)
			}
			e := errs[0]
			if tt.file == "unknown_field.yaml" || tt.file == "duplicate_names.yaml" {
				// The interesting error is not the first in file order.
				for _, x := range errs {
					if strings.Contains(x.Msg, "want aggregate") || strings.Contains(x.Msg, "declared twice") {
						e = x
						break
					}
				}
			}
			if got := textAt(readFile(t, path), e.Line, e.Col); !strings.HasPrefix(got, tt.at) {
				t.Errorf("%v\npoints at %q, want %q", e, firstLine(got), tt.at)
			}
		})
	}
}

// TestErrorPositionsMultiline checks the position of an error on the
// second line of an expression in every YAML scalar style: plain and
// quoted scalars and folded blocks fold their lines into one, literal
// blocks keep them but drop the indentation.
func TestErrorPositionsMultiline(t *testing.T) {
	path := filepath.Join("testdata", "bad", "cel_type_multiline_styles.yaml")
	file := readFile(t, path)
	_, err := Load(EnvOptions{}, path)
	var errs FileErrors
	if !errors.As(err, &errs) {
		t.Fatalf("Load(%s) = %v, want FileErrors", path, err)
	}
	if len(errs) != 9 {
		t.Errorf("%d errors, want one per expression (9):\n%v", len(errs), err)
	}
	for _, e := range errs {
		if got := textAt(file, e.Line, e.Col); !strings.HasPrefix(got, "> 1") {
			t.Errorf("%v\npoints at %q, want the '>' of \"event.timestamp > 1\"", e, firstLine(got))
		}
	}
}

// textAt returns the file's text from a 1-based line and column (in
// characters) to its end.
func textAt(file string, line, col int) string {
	lines := strings.SplitAfter(file, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	l := []rune(lines[line-1])
	if col < 1 || col > len(l)+1 {
		return ""
	}
	return string(l[col-1:]) + strings.Join(lines[line:], "")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// examplePaths are the rule files `make run` loads.
func examplePaths(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "examples", "rules", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no rule files under ../examples/rules")
	}
	return paths
}

func loadExamples(t testing.TB) *Ruleset {
	t.Helper()
	rs, err := Load(EnvOptions{}, examplePaths(t)...)
	if err != nil {
		t.Fatalf("Load examples: %v", err)
	}
	return rs
}

func TestLoadExamples(t *testing.T) {
	rs := loadExamples(t)
	traits := map[string]ValueKind{
		"orders_count":         KindInt,
		"lifetime_value":       KindDouble,
		"last_order_at":        KindTimestamp,
		"orders_90d":           KindInt,
		"carts_7d":             KindInt,
		"favourite_category":   KindString,
		"store_orders":         KindInt,
		"purchase_propensity":  KindDouble,
		"first_touch_source":   KindDyn,
		"first_touch_campaign": KindDyn,
		"last_touch_source":    KindDyn,
		"last_touch_campaign":  KindDyn,
	}
	if len(rs.Traits) != len(traits) {
		t.Errorf("%d traits, want %d", len(rs.Traits), len(traits))
	}
	for i, tr := range rs.Traits {
		if tr.Index != i {
			t.Errorf("trait %s has index %d, want %d", tr.Name(), tr.Index, i)
		}
		if want, ok := traits[tr.Name()]; !ok || tr.Kind != want {
			t.Errorf("trait %s is %v, want %v (declared: %v)", tr.Name(), tr.Kind, want, ok)
		}
	}
	if tr, _ := rs.Trait("orders_90d"); tr == nil || tr.Spec.Window != 90*24*time.Hour {
		t.Errorf("orders_90d = %+v, want a 90d window", tr)
	}
	if tr, _ := rs.Trait("store_orders"); tr == nil || tr.Spec.Where.Message != "orders from the physical shops" {
		t.Errorf("store_orders where = %+v, want the message kept", tr)
	}
	if tr, _ := rs.Trait("purchase_propensity"); tr == nil || !tr.IsExpression() {
		t.Errorf("purchase_propensity = %+v, want an expression trait", tr)
	}
	var names []string
	for _, a := range rs.Audiences {
		names = append(names, a.Name())
	}
	if got, want := strings.Join(names, ","), "customers,vip,priority_recovery,email_reachable"; got != want {
		t.Errorf("audiences %s, want %s (in file order)", got, want)
	}
	if _, ok := rs.Audience("nope"); ok {
		t.Error(`Audience("nope") found`)
	}
}

// TestLoadAcrossFiles checks that an audience file needs the trait file
// it uses, and that errors then point into the audience file.
func TestLoadAcrossFiles(t *testing.T) {
	path := filepath.Join("..", "examples", "rules", "audiences.yaml")
	_, err := Load(EnvOptions{}, path)
	var errs FileErrors
	if !errors.As(err, &errs) {
		t.Fatalf("Load(audiences.yaml alone) = %v, want FileErrors", err)
	}
	for _, e := range errs {
		if e.File != path || !strings.Contains(e.Msg, "undefined field") {
			t.Errorf("unexpected error %v", e)
		}
	}
	if len(errs) != 3 { // customers, vip, priority_recovery
		t.Errorf("%d errors, want 3:\n%v", len(errs), err)
	}
	if got := textAt(readFile(t, path), errs[0].Line, errs[0].Col); !strings.HasPrefix(got, ".orders_count > 0") {
		t.Errorf("%v points at %q", errs[0], firstLine(got))
	}
}

func TestLoadSortsErrorsOfAllFiles(t *testing.T) {
	b := filepath.Join("testdata", "bad", "wrong_aggregate.yaml")
	a := filepath.Join("testdata", "bad", "duplicate_names.yaml")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := Load(EnvOptions{}, b, missing, a)
	var errs FileErrors
	if !errors.As(err, &errs) {
		t.Fatalf("Load = %v, want FileErrors", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, filepath.Base(e.File))
	}
	// Sorted by file name (the temp dir sorts first), then position.
	want := "missing.yaml duplicate_names.yaml duplicate_names.yaml wrong_aggregate.yaml"
	if strings.Join(got, " ") != want {
		t.Errorf("errors in order %v, want %s\n%v", got, want, err)
	}
	if e := errs[0]; e.Line != 1 || e.Col != 1 || !strings.Contains(e.Msg, "no such file") {
		t.Errorf("missing file: %v, want 1:1 and the os error", e)
	}
	if errs[1].Line > errs[2].Line {
		t.Errorf("errors of one file out of order: %v, %v", errs[1], errs[2])
	}
}

func TestParse(t *testing.T) {
	const file = `# Everything a rule file may say.
computed_traits:
  - name: lifetime_value
    description: Total revenue.
    aggregate: sum
    event: Order Completed
    property: properties.revenue
  - name: recent_categories
    aggregate: distinct
    event: Product Viewed
    property: product.category
    window: 2w
    limit: 5
  - name: store_orders
    aggregate: count
    where:
      expression: event.source == "pos"
      message: orders from the shops
  - name: double_value
    expression: profile.computed.lifetime_value * 2.0
audiences:
  - name: big_spenders
    description: Over 1000.
    expression: profile.computed.lifetime_value > 1000.0
    message: spent over 1000
`
	specs, err := Parse("all.yaml", []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(specs.Traits) != 4 || len(specs.Audiences) != 1 {
		t.Fatalf("%d traits, %d audiences; want 4, 1", len(specs.Traits), len(specs.Audiences))
	}
	lv, rc, so, dv := specs.Traits[0], specs.Traits[1], specs.Traits[2], specs.Traits[3]
	if lv.Property != "revenue" || lv.Description != "Total revenue." || lv.Aggregate != "sum" || lv.Event != "Order Completed" {
		t.Errorf("lifetime_value = %+v", lv)
	}
	if rc.Property != "product.category" || rc.Window != 14*24*time.Hour || rc.Limit != 5 {
		t.Errorf("recent_categories = %+v", rc)
	}
	if so.Event != "" || so.Where.Source != `event.source == "pos"` || so.Where.Message != "orders from the shops" {
		t.Errorf("store_orders = %+v", so)
	}
	if dv.Expression.Source != "profile.computed.lifetime_value * 2.0" || dv.Aggregate != "" {
		t.Errorf("double_value = %+v", dv)
	}
	a := specs.Audiences[0]
	if a.Name != "big_spenders" || a.Description != "Over 1000." || a.Expression.Message != "spent over 1000" {
		t.Errorf("big_spenders = %+v", a)
	}
	rs, err := Compile(specs, EnvOptions{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if tr, _ := rs.Trait("double_value"); tr == nil || tr.Kind != KindDouble {
		t.Errorf("double_value = %+v, want a double", tr)
	}
	if tr, _ := rs.Trait("recent_categories"); tr == nil || tr.Kind != KindList {
		t.Errorf("recent_categories = %+v, want a list", tr)
	}

	for _, empty := range []string{"", "# nothing yet\n"} {
		specs, err := Parse("empty.yaml", []byte(empty))
		if err != nil || specs == nil || len(specs.Traits)+len(specs.Audiences) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want empty specs", empty, specs, err)
		}
	}
}

// TestCompileKeepsGoodItems checks that one mistake does not hide the
// others: every bad item of a file is reported in one run.
func TestCompileKeepsGoodItems(t *testing.T) {
	const file = `computed_traits:
  - name: orders_count
    aggregate: count
    event: Order Completed
  - name: broken
    aggregate: sum
    event: Order Completed
audiences:
  - name: one
    expression: profile.computed.orders_count > "1"
  - name: two
    expression: profile.computed.orders_count > 1
  - name: three
    expression: profile.computed.broken > 1.0
`
	specs, err := Parse("partial.yaml", []byte(file))
	var errs FileErrors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Line != 5 {
		t.Fatalf("Parse = %v, want one error at line 5", err)
	}
	if len(specs.Traits) != 1 || len(specs.Audiences) != 3 {
		t.Fatalf("Parse kept %d traits, %d audiences; want 1, 3", len(specs.Traits), len(specs.Audiences))
	}
	_, err = Compile(specs, EnvOptions{})
	if !errors.As(err, &errs) || len(errs) != 2 || errs[0].Line != 10 || errs[1].Line != 14 {
		t.Fatalf("Compile = %v, want errors at lines 10 and 14", err)
	}
}

// A Ruleset keeps the files it was compiled from, as they were read.
func TestLoadKeepsSources(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "traits.yaml")
	text := "computed_traits:\n  - name: orders\n    aggregate: count\n    event: Order Completed\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := Load(EnvOptions{}, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Sources) != 1 || rs.Sources[0].Name != path || string(rs.Sources[0].Data) != text {
		t.Errorf("Sources: %+v, want the one file as read", rs.Sources)
	}
}
