package rules

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// FileError is a mistake at a place in a rule file.
type FileError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *FileError) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg) }

// FileErrors is every mistake found in a set of files, in file order.
type FileErrors []*FileError

func (es FileErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Expr is an expression as written in a file, with what is needed to point
// back into the file.
type Expr struct {
	Source  string
	Message string
	file    *source
	node    *yaml.Node
}

// IsZero reports whether no expression was written.
func (x Expr) IsZero() bool { return x.Source == "" }

// errorAt turns a compile error inside the expression into a file error.
func (x Expr) errorAt(err error) *FileError {
	var ce *CompileError
	line, col := 1, 1
	msg := err.Error()
	if errors.As(err, &ce) {
		line, col, msg = ce.Line, ce.Col, ce.Msg
	}
	if x.file == nil || x.node == nil {
		return &FileError{File: "<expression>", Line: line, Col: col, Msg: msg}
	}
	fl, fc := x.file.exprPos(x.node, line, col)
	return &FileError{File: x.file.name, Line: fl, Col: fc, Msg: msg}
}

// source is one rule file being read.
type source struct {
	name  string
	lines []string
	errs  FileErrors
}

func (s *source) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	s.errs = append(s.errs, &FileError{File: s.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// exprPos maps a 1-based line and column inside a scalar's value to the
// file (see findPos). Where that fails, it estimates: plain and quoted
// scalars start at the node; a literal block (|) starts on the next line at
// the block's indentation.
func (s *source) exprPos(n *yaml.Node, line, col int) (int, int) {
	if fl, fc, ok := s.findPos(n, line, col); ok {
		return fl, fc
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// The block's indentation is that of its first line; CEL's
		// columns count the spaces beyond it.
		indent := 0
		if n.Line < len(s.lines) {
			l := s.lines[n.Line]
			indent = len(l) - len(strings.TrimLeft(l, " "))
		}
		return n.Line + line, indent + col
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			return n.Line, n.Column + col
		}
	default:
		if line == 1 {
			return n.Line, n.Column + col - 1
		}
	}
	fl := n.Line + line - 1
	indent := 0
	if fl-1 < len(s.lines) {
		l := s.lines[fl-1]
		indent = len(l) - len(strings.TrimLeft(l, " "))
	}
	return fl, indent + col
}

// findPos maps a position in a scalar's value to the file by reading the
// file from the scalar's start: YAML folds the lines of plain, quoted and
// folded (>) scalars into one and strips a block's indentation, so only
// the characters other than white space are the same, in the same order.
// It fails (for the caller's estimate) where escapes in a quoted scalar
// make the file and the value differ.
func (s *source) findPos(n *yaml.Node, line, col int) (int, int, bool) {
	val := []rune(n.Value)
	off := 0 // of line:col in val
	for l := 1; l < line; l++ {
		i := slices.Index(val[off:], '\n')
		if i < 0 {
			return 0, 0, false
		}
		off += i + 1
	}
	off += col - 1
	if col < 1 || off > len(val) {
		return 0, 0, false
	}
	fl, fc := n.Line, n.Column-1 // 1-based line, 0-based column of the next character to read
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		fl, fc = n.Line+1, 0
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		fc++
	}
	// prevL, prevC: the file position just after the last character matched.
	prevL, prevC := fl, fc+1
	var text []rune
	if fl >= 1 && fl <= len(s.lines) {
		text = []rune(s.lines[fl-1])
	}
	for i, r := range val {
		if unicode.IsSpace(r) {
			if i == off {
				return prevL, prevC, true
			}
			continue
		}
		for fc >= len(text) || unicode.IsSpace(text[fc]) {
			if fc < len(text) {
				fc++
				continue
			}
			if fl >= len(s.lines) {
				return 0, 0, false
			}
			fl, fc = fl+1, 0
			text = []rune(s.lines[fl-1])
		}
		if text[fc] != r {
			return 0, 0, false
		}
		if i == off {
			return fl, fc + 1, true
		}
		fc++
		prevL, prevC = fl, fc+1
	}
	return prevL, prevC, true // just after the value
}

// TraitSpec is a computed trait as declared in a file.
type TraitSpec struct {
	Name        string
	Description string
	// Aggregate is count, sum, min, max, first, last, distinct or
	// most_frequent; empty for an expression trait.
	Aggregate string
	// Event limits the trait to events of this name (track event name, or
	// page/screen name).
	Event string
	// Where filters events further (CEL over event and profile).
	Where Expr
	// Property is the path of the value under event.properties
	// ("revenue", "product.category"), or under event.context when it
	// starts with "context." ("context.campaign.source"); first and last
	// without it take the event's timestamp.
	Property string
	// Window keeps only events of the last Window (0: all time).
	Window time.Duration
	// Limit bounds distinct lists (default 20).
	Limit int
	// Expression makes a trait computed from other traits when read.
	Expression Expr

	file *source
	node *yaml.Node
}

// AudienceSpec is an audience as declared in a file.
type AudienceSpec struct {
	Name        string
	Description string
	Expression  Expr

	file *source
	node *yaml.Node
}

// Specs is what a set of rule files declares.
type Specs struct {
	Traits    []*TraitSpec
	Audiences []*AudienceSpec
}

// Load reads and compiles rule files together (an audience may use a trait
// of another file). Every mistake of every file comes back in one
// FileErrors, sorted by file and position.
func Load(opts EnvOptions, paths ...string) (*Ruleset, error) {
	srcs, errs := readSources(paths)
	return load(opts, srcs, errs)
}

// Source is a rule file's name and the bytes read from it.
type Source struct {
	Name string
	Data []byte
}

func readSources(paths []string) ([]Source, FileErrors) {
	var srcs []Source
	var errs FileErrors
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, &FileError{File: p, Line: 1, Col: 1, Msg: err.Error()})
			continue
		}
		srcs = append(srcs, Source{Name: p, Data: b})
	}
	return srcs, errs
}

func load(opts EnvOptions, srcs []Source, errs FileErrors) (*Ruleset, error) {
	specs, parseErr := parseSources(srcs)
	var perrs FileErrors
	if parseErr != nil && !errors.As(parseErr, &perrs) {
		return nil, parseErr
	}
	errs = append(errs, perrs...)
	rs, err := Compile(specs, opts)
	var cerrs FileErrors
	if errors.As(err, &cerrs) {
		errs = append(errs, cerrs...)
	} else if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *FileError) int {
			if c := strings.Compare(a.File, b.File); c != 0 {
				return c
			}
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		return nil, errs
	}
	rs.Sources = srcs
	return rs, nil
}

// ReadFiles reads rule files; all mistakes of all files come back together,
// with the items that had none.
func ReadFiles(paths ...string) (*Specs, error) {
	srcs, errs := readSources(paths)
	out, err := parseSources(srcs)
	var perrs FileErrors
	if err != nil && !errors.As(err, &perrs) {
		return nil, err
	}
	errs = append(errs, perrs...)
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

// parseSources parses rule files; all mistakes come back together, with
// the items that had none.
func parseSources(srcs []Source) (*Specs, error) {
	out := &Specs{}
	var errs FileErrors
	for _, src := range srcs {
		sp, err := Parse(src.Name, src.Data)
		var fe FileErrors
		if errors.As(err, &fe) {
			errs = append(errs, fe...)
		} else if err != nil {
			return nil, err
		}
		if sp != nil {
			out.Traits = append(out.Traits, sp.Traits...)
			out.Audiences = append(out.Audiences, sp.Audiences...)
		}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

// Parse reads one rule file's bytes. The file may hold computed_traits,
// audiences, or both.
func Parse(name string, b []byte) (*Specs, error) {
	src, root, err := openSource(name, b)
	if err != nil {
		return nil, err
	}
	out := &Specs{}
	if root == nil {
		return out, nil
	}
	src.mapping(root, "the file", func(key string, k, v *yaml.Node) {
		switch key {
		// An item with a mistake is left out, so the rest can still be
		// compiled and every error reported in one run.
		case "computed_traits":
			src.sequence(v, key, func(item *yaml.Node) {
				before := len(src.errs)
				if t := src.trait(item); t != nil && len(src.errs) == before {
					out.Traits = append(out.Traits, t)
				}
			})
		case "audiences":
			src.sequence(v, key, func(item *yaml.Node) {
				before := len(src.errs)
				if a := src.audience(item); a != nil && len(src.errs) == before {
					out.Audiences = append(out.Audiences, a)
				}
			})
		default:
			src.errorf(k, "unknown field %q: want computed_traits or audiences", key)
		}
	})
	if len(src.errs) > 0 {
		return out, src.errs
	}
	return out, nil
}

func (s *source) mapping(n *yaml.Node, what string, each func(key string, k, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		s.errorf(n, "%s: want a mapping of fields", what)
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			s.errorf(k, "field %q given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		each(k.Value, k, v)
	}
	return true
}

func (s *source) sequence(n *yaml.Node, what string, each func(item *yaml.Node)) {
	if n.Kind != yaml.SequenceNode {
		s.errorf(n, "%s: want a list", what)
		return
	}
	for _, item := range n.Content {
		each(item)
	}
}

func (s *source) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		s.errorf(n, "%s: want a string", field)
		return ""
	}
	return n.Value
}

func (s *source) integer(n *yaml.Node, field string) int {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		s.errorf(n, "%s: want a whole number, got %q", field, n.Value)
	}
	return v
}

// duration reads Go durations plus days and weeks: 90d, 2w, 36h.
func (s *source) duration(n *yaml.Node, field string) time.Duration {
	d, err := ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		s.errorf(n, "%s: want a duration such as 90d, 24h or 30m, got %q", field, n.Value)
	}
	return d
}

// openSource parses a YAML file into its root node (nil when empty), with
// a syntax error as FileErrors.
func openSource(name string, b []byte) (*source, *yaml.Node, error) {
	src := &source{name: name, lines: strings.Split(string(b), "\n")}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return src, nil, nil
		}
		line := 1
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, after, ok := strings.Cut(rest, ": "); ok {
				if l, err := strconv.Atoi(n); err == nil {
					line, msg = l, after
				}
			}
		}
		return nil, nil, FileErrors{{File: name, Line: line, Col: 1, Msg: msg}}
	}
	if len(doc.Content) == 0 {
		return src, nil, nil
	}
	return src, doc.Content[0], nil
}

// ParseDuration reads a Go duration, or a whole number of days (d) or weeks (w).
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if num, ok := strings.CutSuffix(v, suffix); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("invalid duration %q", v)
			}
			return time.Duration(n) * unit, nil
		}
	}
	return time.ParseDuration(v)
}

// expr reads an expression: a string, or {expression, message} as in
// Kubernetes' CEL policies.
func (s *source) expr(n *yaml.Node, field string) Expr {
	if n.Kind == yaml.ScalarNode {
		return Expr{Source: s.str(n, field), file: s, node: n}
	}
	var x Expr
	s.mapping(n, field, func(key string, k, v *yaml.Node) {
		switch key {
		case "expression":
			x = Expr{Source: s.str(v, field+".expression"), Message: x.Message, file: s, node: v}
		case "message":
			x.Message = s.str(v, field+".message")
		default:
			s.errorf(k, "unknown field %q in %s: want expression or message", key, field)
		}
	})
	if x.Source == "" {
		s.errorf(n, "%s: expression is required", field)
	}
	return x
}

// Aggregates computed traits may use.
var aggregates = []string{"count", "sum", "min", "max", "first", "last", "distinct", "most_frequent"}

func (s *source) trait(n *yaml.Node) *TraitSpec {
	t := &TraitSpec{file: s, node: n}
	ok := s.mapping(n, "computed trait", func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			t.Name = s.str(v, key)
		case "description":
			t.Description = s.str(v, key)
		case "aggregate":
			t.Aggregate = s.str(v, key)
			if !slices.Contains(aggregates, t.Aggregate) {
				s.errorf(v, "aggregate: want one of %s, got %q", strings.Join(aggregates, ", "), t.Aggregate)
			}
		case "event":
			t.Event = s.str(v, key)
		case "where":
			t.Where = s.expr(v, key)
		case "property":
			t.Property = strings.TrimPrefix(s.str(v, key), "properties.")
		case "window":
			t.Window = s.duration(v, key)
			if t.Window < 0 {
				s.errorf(v, "window: want a positive duration")
			}
		case "limit":
			t.Limit = s.integer(v, key)
			if t.Limit < 1 || t.Limit > 1000 {
				s.errorf(v, "limit: want 1 to 1000, got %d", t.Limit)
			}
		case "expression":
			t.Expression = s.expr(v, key)
		default:
			s.errorf(k, "unknown field %q in computed trait: want name, description, aggregate, event, where, property, window, limit or expression", key)
		}
	})
	if !ok {
		return nil
	}
	switch {
	case !validName(t.Name):
		s.errorf(n, "computed trait: name must be a lower_snake_case identifier, got %q", t.Name)
	case t.Expression.IsZero() && t.Aggregate == "":
		s.errorf(n, "computed trait %s: want aggregate (with event or where) or expression", t.Name)
	case !t.Expression.IsZero() && (t.Aggregate != "" || t.Event != "" || !t.Where.IsZero() || t.Property != "" || t.Window != 0):
		s.errorf(n, "computed trait %s: an expression trait takes no aggregate, event, where, property or window", t.Name)
	case t.Aggregate != "" && t.Event == "" && t.Where.IsZero():
		s.errorf(n, "computed trait %s: want event or where to say which events count", t.Name)
	case needsProperty(t.Aggregate) && t.Property == "":
		s.errorf(n, "computed trait %s: aggregate %s needs a property", t.Name, t.Aggregate)
	}
	return t
}

func needsProperty(agg string) bool {
	switch agg {
	case "sum", "min", "max", "distinct", "most_frequent":
		return true
	}
	return false
}

func (s *source) audience(n *yaml.Node) *AudienceSpec {
	a := &AudienceSpec{file: s, node: n}
	ok := s.mapping(n, "audience", func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			a.Name = s.str(v, key)
		case "description":
			a.Description = s.str(v, key)
		case "expression":
			a.Expression.Source, a.Expression.file, a.Expression.node = s.str(v, key), s, v
		case "message":
			a.Expression.Message = s.str(v, key)
		default:
			s.errorf(k, "unknown field %q in audience: want name, description, expression or message", key)
		}
	})
	if !ok {
		return nil
	}
	if !validName(a.Name) {
		s.errorf(n, "audience: name must be a lower_snake_case identifier, got %q", a.Name)
	}
	if a.Expression.IsZero() {
		s.errorf(n, "audience %s: expression is required", a.Name)
	}
	return a
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
