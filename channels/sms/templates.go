package sms

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"cartera/rules"
)

// Renderer turns a template id and data into a message text, in the
// person's locale when the template has one.
type Renderer interface {
	Render(template, locale string, data map[string]any) (string, error)
}

// FileSuffix ends the name of every SMS template file.
const FileSuffix = ".sms.txt"

// ErrUnknownTemplate is a template id with no file.
var ErrUnknownTemplate = errors.New("unknown sms template")

// TextTemplates are SMS texts written as Go text/template files, one per
// template and locale: <id>.<locale>.sms.txt ("cart_reminder.es.sms.txt",
// "cart_reminder.en-GB.sms.txt"); <id>.sms.txt is the default locale's
// text, as in package email. A key missing from the data is an error, not
// "<no value>"; {{index .traits "first_name"}} reads a trait that may be
// absent. The text is trimmed of surrounding white space, so files may end
// in a newline. TextTemplates is safe for concurrent use.
type TextTemplates struct {
	defaultLocale string
	// byID maps an id to its texts by normalized locale; the default
	// locale's key also holds <id>.sms.txt.
	byID map[string]map[string]*text
}

type text struct {
	path string
	src  string
	tpl  *template.Template
}

// LoadTextTemplates reads every *.sms.txt file of dir (not its
// sub-folders); defaultLocale ("en", or "" for none) is the locale of the
// files without one and the fallback of every other. All mistakes of all
// files come back together as rules.FileErrors (file:line:col: message).
func LoadTextTemplates(dir, defaultLocale string) (*TextTemplates, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load sms templates: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), FileSuffix) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	return ParseFiles(defaultLocale, paths...)
}

// ParseFiles reads the named template files (for validate, which is given
// paths), as LoadTextTemplates does. Mistakes come back as
// rules.FileErrors, in path order.
func ParseFiles(defaultLocale string, paths ...string) (*TextTemplates, error) {
	if defaultLocale != "" && !localePattern.MatchString(defaultLocale) {
		return nil, fmt.Errorf("sms templates: default locale %q: want a language tag such as en or es-MX", defaultLocale)
	}
	ts := &TextTemplates{defaultLocale: normLocale(defaultLocale), byID: map[string]map[string]*text{}}
	var errs rules.FileErrors
	for _, p := range paths {
		if err := ts.parseFile(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return ts, nil
}

func (ts *TextTemplates) parseFile(path string) *rules.FileError {
	at := func(line, col int, format string, args ...any) *rules.FileError {
		return &rules.FileError{File: path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
	}
	id, locale, err := splitName(filepath.Base(path))
	if err != nil {
		return at(1, 1, "%v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return at(1, 1, "%v", err)
	}
	name := filepath.Base(path)
	tpl, err := template.New(name).Option("missingkey=error").Parse(string(b))
	if err != nil {
		return fileError(path, name, string(b), err)
	}
	key := normLocale(locale)
	if key == "" {
		key = ts.defaultLocale
	}
	if ts.byID[id] == nil {
		ts.byID[id] = map[string]*text{}
	}
	if prev := ts.byID[id][key]; prev != nil {
		return at(1, 1, "template %s (locale %q) already read from %s", id, key, prev.path)
	}
	ts.byID[id][key] = &text{path: path, src: string(b), tpl: tpl}
	return nil
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	localePattern = regexp.MustCompile(`^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$`)
)

// splitName reads <id>[.<locale>].sms.txt.
func splitName(base string) (id, locale string, err error) {
	stem, ok := strings.CutSuffix(base, FileSuffix)
	if !ok {
		return "", "", fmt.Errorf("file name: want <id>[.<locale>]%s", FileSuffix)
	}
	id = stem
	if i := strings.LastIndexByte(stem, '.'); i >= 0 {
		id, locale = stem[:i], stem[i+1:]
		if !localePattern.MatchString(locale) {
			return "", "", fmt.Errorf("file name: locale %q: want a language tag such as es or en-GB", locale)
		}
	}
	if !idPattern.MatchString(id) {
		return "", "", fmt.Errorf("file name: template id %q: want letters, digits, _ or -", id)
	}
	return id, locale, nil
}

// normLocale makes "en_GB" and "en-gb" the same key.
func normLocale(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), "_", "-"))
}

// Names lists the template ids, sorted (for journeys' check of send steps).
func (ts *TextTemplates) Names() []string {
	ids := make([]string, 0, len(ts.byID))
	for id := range ts.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Has reports whether a template id has a file.
func (ts *TextTemplates) Has(id string) bool { return ts.byID[id] != nil }

// DefaultLocale is the normalized default locale ("" for none).
func (ts *TextTemplates) DefaultLocale() string { return ts.defaultLocale }

// Render executes the template for the locale: the exact locale, then
// each shorter tag ("es-MX" falls back to "es"), then the default locale
// the same way. A template missing, or with no text for the locale nor the
// default, is ErrUnknownTemplate; a failed execution a *rules.FileError.
func (ts *TextTemplates) Render(id, locale string, data map[string]any) (string, error) {
	t := ts.find(id, locale)
	if t == nil {
		if locale == "" {
			return "", fmt.Errorf("%w %q", ErrUnknownTemplate, id)
		}
		return "", fmt.Errorf("%w %q (locale %q)", ErrUnknownTemplate, id, locale)
	}
	var b strings.Builder
	if err := t.tpl.Execute(&b, data); err != nil {
		return "", fileError(t.path, t.tpl.Name(), t.src, err)
	}
	return strings.TrimSpace(b.String()), nil
}

func (ts *TextTemplates) find(id, locale string) *text {
	texts := ts.byID[id]
	if texts == nil {
		return nil
	}
	for _, l := range []string{normLocale(locale), ts.defaultLocale} {
		for l != "" {
			if t := texts[l]; t != nil {
				return t
			}
			i := strings.LastIndexByte(l, '-')
			if i < 0 {
				break
			}
			l = l[:i]
		}
	}
	return texts[""]
}

// fileError places a text/template error in its file. Parse errors carry
// a line only ("template: NAME:LINE: msg"); the column is where on that
// line the token the message quotes is, else the line's first action.
// Execution errors carry line and 0-based byte column
// ("template: NAME:LINE:COL: ...").
func fileError(path, name, src string, err error) *rules.FileError {
	fe := &rules.FileError{File: path, Line: 1, Col: 1, Msg: err.Error()}
	rest, ok := strings.CutPrefix(err.Error(), "template: "+name+":")
	if !ok {
		return fe
	}
	pos, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return fe
	}
	lineStr, colStr, hasCol := strings.Cut(pos, ":")
	line, err1 := strconv.Atoi(lineStr)
	if err1 != nil || line < 1 {
		return fe
	}
	fe.Line, fe.Msg = line, strings.TrimPrefix(msg, `executing "`+name+`" `)
	lines := strings.Split(src, "\n")
	if hasCol {
		// text/template counts columns from 0, and points at the last
		// field of a chain (.tracking.url); point at the chain's start.
		if col, err := strconv.Atoi(colStr); err == nil && col >= 0 {
			fe.Col = col + 1
			if line <= len(lines) {
				fe.Col = chainStart(lines[line-1], fe.Msg, col)
			}
		}
		return fe
	}
	if line > len(lines) {
		return fe
	}
	fe.Col = guessCol(lines[line-1], msg)
	return fe
}

// chainStart finds the node an execution error quotes ("at <.a.b>: ...")
// around 0-based byte col of line, and returns its 1-based start column;
// col+1 when the line does not hold it there.
func chainStart(line, msg string, col int) int {
	ctx, _, ok := strings.Cut(strings.TrimPrefix(msg, "at <"), ">: ")
	if !ok || ctx == "" || !strings.HasPrefix(msg, "at <") {
		return col + 1
	}
	for i := 0; ; {
		j := strings.Index(line[i:], ctx)
		if j < 0 {
			return col + 1
		}
		start := i + j
		if start <= col && col < start+len(ctx) {
			return start + 1
		}
		i = start + 1
	}
}

var quoted = regexp.MustCompile(`"([^"]+)"|'([^']+)'|(\{\{[^}]*\}\})`)

// guessCol finds on a line the first token that msg quotes ("upper",
// '}', {{end}}), else the first {{, else column 1. Columns count bytes,
// as text/template's do.
func guessCol(line, msg string) int {
	for _, m := range quoted.FindAllStringSubmatch(msg, -1) {
		tok := m[1] + m[2] + m[3]
		if i := strings.Index(line, tok); i >= 0 {
			return i + 1
		}
	}
	if i := strings.Index(line, "{{"); i >= 0 {
		return i + 1
	}
	return 1
}
