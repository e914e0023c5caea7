package rules

import (
	"fmt"
	"time"

	"github.com/google/cel-go/common/types"
	"gopkg.in/yaml.v3"
)

// File reads a YAML file of Cartera's (rules, journeys, policies) keeping
// positions, so every mistake, CEL ones included, is reported as
// file:line:col. Other packages build their file formats on it.
type File struct{ s *source }

// OpenFile parses b; root is nil for an empty file. A YAML syntax error
// comes back as FileErrors.
func OpenFile(name string, b []byte) (f *File, root *yaml.Node, err error) {
	src, root, err := openSource(name, b)
	if err != nil {
		return nil, nil, err
	}
	return &File{s: src}, root, nil
}

// Name is the file's name as given.
func (f *File) Name() string { return f.s.name }

// Errorf records a mistake at a node.
func (f *File) Errorf(n *yaml.Node, format string, args ...any) { f.s.errorf(n, format, args...) }

// Add records an error (a compile error from CompileExpr) as it is.
func (f *File) Add(err *FileError) { f.s.errs = append(f.s.errs, err) }

// Errors returns the mistakes recorded so far (nil when none).
func (f *File) Errors() error {
	if len(f.s.errs) == 0 {
		return nil
	}
	return f.s.errs
}

// Count is how many mistakes are recorded.
func (f *File) Count() int { return len(f.s.errs) }

// Mapping calls each for every key of a mapping node, reporting keys given
// twice; it reports false (and records why) when n is not a mapping.
func (f *File) Mapping(n *yaml.Node, what string, each func(key string, k, v *yaml.Node)) bool {
	return f.s.mapping(n, what, each)
}

// Sequence calls each for every item of a sequence node.
func (f *File) Sequence(n *yaml.Node, what string, each func(item *yaml.Node)) {
	f.s.sequence(n, what, each)
}

// String reads a scalar.
func (f *File) String(n *yaml.Node, field string) string { return f.s.str(n, field) }

// Int reads a whole number.
func (f *File) Int(n *yaml.Node, field string) int { return f.s.integer(n, field) }

// Duration reads 90d, 2w, 36h or 30m.
func (f *File) Duration(n *yaml.Node, field string) time.Duration { return f.s.duration(n, field) }

// Bool reads true or false.
func (f *File) Bool(n *yaml.Node, field string) bool {
	if n.Kind != yaml.ScalarNode || (n.Value != "true" && n.Value != "false") {
		f.s.errorf(n, "%s: want true or false, got %q", field, n.Value)
		return false
	}
	return n.Value == "true"
}

// Expr reads an expression: a string, or {expression, message}.
func (f *File) Expr(n *yaml.Node, field string) Expr { return f.s.expr(n, field) }

// CompileExpr compiles an expression read from a file; a mistake comes back
// as a *FileError pointing into the file.
func (e *Env) CompileExpr(x Expr, want *types.Type) (*Program, *FileError) {
	prg, err := e.Compile(x.Source, want)
	if err != nil {
		return nil, x.errorAt(err)
	}
	return prg, nil
}

// Compile compiles an expression read from f in env. A mistake is
// recorded as a file:line:col error and gives nil, as an absent (zero)
// expression does.
func (f *File) Compile(env *Env, x Expr, want *types.Type) *Program {
	if x.IsZero() {
		return nil
	}
	prg, ferr := env.CompileExpr(x, want)
	if ferr != nil {
		f.Add(ferr)
		return nil
	}
	return prg
}

// ErrorAt turns an error about the expression into a file error at it.
func (x Expr) ErrorAt(err error) *FileError { return x.errorAt(err) }

// Pos is the position of a node, for messages.
func Pos(f *File, n *yaml.Node) string { return fmt.Sprintf("%s:%d:%d", f.s.name, n.Line, n.Column) }
