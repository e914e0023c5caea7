package email

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	texttemplate "text/template"

	"golang.org/x/net/html"
	"gopkg.in/yaml.v3"

	"cartera/rules"
)

// ErrUnknownTemplate is returned by Render for a template id that the
// folder does not hold.
var ErrUnknownTemplate = errors.New("unknown template")

// Data is what a template sees as its dot. Every field is always present,
// so a template may use it without a guard; maps (Traits, Trigger, Links,
// Vars) are looked up with missingkey=error, so {{.Trigger.cart_id}} fails
// the render (and the send) when the key is absent. Use the methods and
// functions below for values that may be missing:
//
//	{{.Profile.Trait "first_name"}}   a trait, or "" when the person has none
//	{{.Link "shop"}}                  a link, or ""
//	{{get .Trigger "product.name"}}   a value at a dotted path in any map, or ""
//	{{default "there" X}}             X, or "there" when X is empty
//
// For example: Hi {{with .Profile.Trait "first_name"}}{{.}}{{else}}there{{end}}.
type Data struct {
	// Profile is the person the mail goes to.
	Profile Recipient
	// Journey and Step name what sends the mail ("" when sent by hand).
	Journey string
	Step    string
	// Template is the template id; Locale is the locale of the version
	// rendered ("es", "en"), set by Render.
	Template string
	Locale   string
	// Trigger holds the properties of the event that started the journey
	// (the send payload's "trigger"), such as cart_id or product_id.
	Trigger map[string]any
	// Links are named URLs: the sender's configured links (such as
	// "shop"), those of the send payload's "links", and "unsubscribe", the
	// person's signed unsubscribe link (left as it is by click tracking).
	Links map[string]string
	// Vars holds every other key of the send payload's data.
	Vars map[string]any
}

// Recipient is the person a mail goes to, as templates see them.
type Recipient struct {
	ID    string
	Email string
	// Traits are the profile's traits (first_name, tier, birthday…).
	Traits map[string]any
}

// Trait returns a trait's value, or "" when the person does not have it,
// so {{with .Profile.Trait "first_name"}} falls back cleanly.
func (r Recipient) Trait(name string) any {
	if v, ok := r.Traits[name]; ok && v != nil {
		return v
	}
	return ""
}

// Link returns a named link, or "" when there is none.
func (d Data) Link(name string) string { return d.Links[name] }

// Rendered is a template rendered for one person.
type Rendered struct {
	// Locale is the locale of the version used ("es" for "es-MX" when
	// there is no es-MX version).
	Locale    string
	Subject   string
	Preheader string
	// HTML holds the preheader, when there is one, as a hidden block at
	// the start of the body, where mail clients look for preview text.
	HTML string
	Text string
}

// Templates holds parsed email templates by id and locale. It is safe for
// concurrent use.
type Templates struct {
	defaultLocale string
	// byID maps id → locale ("" for the default) → version.
	byID map[string]map[string]*version
}

// version is one locale of one template.
type version struct {
	locale string
	// file is the subject file, to name the template in errors.
	file      string
	subject   *texttemplate.Template
	preheader *texttemplate.Template
	html      *htmltemplate.Template
	text      *texttemplate.Template
}

// Template parts, by file extension.
const (
	partYAML = ".yaml"
	partHTML = ".html"
	partText = ".txt"
)

var (
	validID     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	validLocale = regexp.MustCompile(`^[a-z]{2,3}(-[a-z0-9]{2,8})*$`)
	// A parse error of text/template: "template: NAME:LINE: message".
	parseErrPos = regexp.MustCompile(`^template: .*?:(\d+):(?:(\d+):)? (.*)$`)
	// The rest of an execution error: `executing "NAME" at <.X>: message`.
	execErrMsg = regexp.MustCompile(`^executing ".*?" at (<.*?>): (.*)$`)
)

// funcs are the functions templates may call besides the built-in ones.
func funcs() map[string]any {
	return map[string]any{
		"get":     get,
		"default": defaultValue,
	}
}

// get returns the value at a dotted path in a map, or "" when any part of
// the path is missing.
func get(m any, path string) any {
	cur := m
	for part := range strings.SplitSeq(path, ".") {
		switch mm := cur.(type) {
		case map[string]any:
			v, ok := mm[part]
			if !ok || v == nil {
				return ""
			}
			cur = v
		case map[string]string:
			v, ok := mm[part]
			if !ok {
				return ""
			}
			cur = v
		default:
			return ""
		}
	}
	return cur
}

// defaultValue returns v unless it is empty (nil, "", 0, false), else def.
func defaultValue(def, v any) any {
	if truth, ok := htmltemplate.IsTrue(v); !ok || !truth {
		return def
	}
	return v
}

// NormalizeLocale lower-cases a locale and writes its separator as "-":
// "es_MX" → "es-mx".
func NormalizeLocale(l string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(l)), "_", "-")
}

// LoadTemplates reads every template of a folder: per template id and
// locale, ID.LOCALE.yaml (subject, preheader), ID.LOCALE.html and
// ID.LOCALE.txt; the default locale's files may leave the locale out
// (cart_reminder.yaml). Files of other kinds and sub-folders are ignored.
// Every mistake of every file comes back at once as rules.FileErrors.
func LoadTemplates(dir string, defaultLocale string) (*Templates, error) {
	def := NormalizeLocale(defaultLocale)
	if !validLocale.MatchString(def) {
		return nil, fmt.Errorf("load templates: default locale %q: want a language such as en or es-MX", defaultLocale)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, rules.FileErrors{{File: dir, Line: 1, Col: 1, Msg: err.Error()}}
	}
	t := &Templates{defaultLocale: def, byID: map[string]map[string]*version{}}
	var errs rules.FileErrors
	// files: id → locale → part → file path, to check each version is whole.
	type parts map[string]string
	files := map[string]map[string]parts{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		ext := filepath.Ext(name)
		if ext != partYAML && ext != partHTML && ext != partText {
			continue
		}
		path := filepath.Join(dir, name)
		id, locale, err := splitName(strings.TrimSuffix(name, ext))
		if err != nil {
			errs = append(errs, &rules.FileError{File: path, Line: 1, Col: 1, Msg: err.Error()})
			continue
		}
		if locale == def {
			locale = ""
		}
		if files[id] == nil {
			files[id] = map[string]parts{}
		}
		if files[id][locale] == nil {
			files[id][locale] = parts{}
		}
		if other, dup := files[id][locale][ext]; dup {
			errs = append(errs, &rules.FileError{File: path, Line: 1, Col: 1,
				Msg: fmt.Sprintf("same template as %s (%s is the default locale)", filepath.Base(other), def)})
			continue
		}
		files[id][locale][ext] = path
	}
	for id, locales := range files {
		if _, ok := locales[""]; !ok {
			for _, ps := range locales {
				errs = append(errs, &rules.FileError{File: anyPart(ps), Line: 1, Col: 1,
					Msg: fmt.Sprintf("template %s has no version in the default locale: want %s.yaml, %s.html and %s.txt (or %s.%s.*)", id, id, id, id, id, def)})
				break
			}
		}
		for locale, ps := range locales {
			missing := false
			for _, ext := range []string{partYAML, partHTML, partText} {
				if _, ok := ps[ext]; !ok {
					missing = true
					base := id
					if locale != "" {
						base += "." + locale
					}
					errs = append(errs, &rules.FileError{File: anyPart(ps), Line: 1, Col: 1,
						Msg: fmt.Sprintf("template %s is missing its %s part: want %s%s beside it", base, partName(ext), base, ext)})
				}
			}
			if missing {
				continue
			}
			v, verrs := parseVersion(ps[partYAML], ps[partHTML], ps[partText])
			errs = append(errs, verrs...)
			if v == nil {
				continue
			}
			v.locale, v.file = locale, ps[partYAML]
			if locale == "" {
				v.locale = def
			}
			if t.byID[id] == nil {
				t.byID[id] = map[string]*version{}
			}
			t.byID[id][locale] = v
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *rules.FileError) int {
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
	return t, nil
}

// LoadTemplateDirs reads the templates of several folders as one set, so
// a team can keep its own beside the examples'. A template id is in one
// folder only: the same id in two folders is an error naming both files.
// Every mistake of every folder comes back at once as rules.FileErrors.
func LoadTemplateDirs(dirs []string, defaultLocale string) (*Templates, error) {
	if len(dirs) == 1 {
		return LoadTemplates(dirs[0], defaultLocale)
	}
	out := &Templates{defaultLocale: NormalizeLocale(defaultLocale), byID: map[string]map[string]*version{}}
	var errs rules.FileErrors
	seen := map[string]bool{}
	for _, dir := range dirs {
		key := dir
		if a, err := filepath.Abs(dir); err == nil {
			key = a
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		t, err := LoadTemplates(dir, defaultLocale)
		var fe rules.FileErrors
		if errors.As(err, &fe) {
			errs = append(errs, fe...)
			continue
		} else if err != nil {
			return nil, err
		}
		for _, id := range t.Names() {
			if other, dup := out.byID[id]; dup {
				errs = append(errs, &rules.FileError{File: t.byID[id][""].file, Line: 1, Col: 1,
					Msg: fmt.Sprintf("template %s is also in %s: a template id is in one folder only", id, other[""].file)})
				continue
			}
			out.byID[id] = t.byID[id]
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// anyPart returns the first existing part's path, in a fixed order.
func anyPart(ps map[string]string) string {
	for _, ext := range []string{partYAML, partHTML, partText} {
		if p, ok := ps[ext]; ok {
			return p
		}
	}
	return ""
}

func partName(ext string) string {
	switch ext {
	case partYAML:
		return "subject (.yaml)"
	case partHTML:
		return "HTML"
	}
	return "text"
}

// splitName splits "cart_reminder.es-MX" into the id and the normalized
// locale ("" when none is written).
func splitName(base string) (id, locale string, err error) {
	id, locale, _ = strings.Cut(base, ".")
	locale = NormalizeLocale(locale)
	if !validID.MatchString(id) {
		return "", "", fmt.Errorf("template id %q: want lower-case letters, digits, _ and -, as in cart_reminder.en.html", id)
	}
	if strings.Contains(base, ".") && !validLocale.MatchString(locale) {
		return "", "", fmt.Errorf("locale %q: want a language such as en, es or es-MX, as in %s.es.html", locale, id)
	}
	return id, locale, nil
}

// parseVersion parses the three parts of one version; it returns nil and
// the mistakes when any part has one.
func parseVersion(yamlPath, htmlPath, textPath string) (*version, rules.FileErrors) {
	var errs rules.FileErrors
	v := &version{}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, &rules.FileError{File: path, Line: 1, Col: 1, Msg: err.Error()})
			return nil
		}
		return b
	}

	if b := read(yamlPath); b != nil {
		errs = append(errs, v.parseYAML(yamlPath, b)...)
	}
	if b := read(htmlPath); b != nil {
		name := filepath.Base(htmlPath)
		t, err := htmltemplate.New(name).Funcs(funcs()).Option("missingkey=error").Parse(string(b))
		if err != nil {
			errs = append(errs, templateError(htmlPath, err, 1, 1))
		} else if err := escapeCheck(t); err != nil {
			errs = append(errs, templateError(htmlPath, err, 1, 1))
		} else {
			v.html = t
		}
	}
	if b := read(textPath); b != nil {
		name := filepath.Base(textPath)
		t, err := texttemplate.New(name).Funcs(funcs()).Option("missingkey=error").Parse(string(b))
		if err != nil {
			errs = append(errs, templateError(textPath, err, 1, 1))
		} else if err := fieldCheck(t.Execute); err != nil {
			errs = append(errs, templateError(textPath, err, 1, 1))
		} else {
			v.text = t
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return v, nil
}

// parseYAML reads subject and preheader; both are text templates.
func (v *version) parseYAML(path string, b []byte) rules.FileErrors {
	f, root, err := rules.OpenFile(path, b)
	if err != nil {
		var fe rules.FileErrors
		if errors.As(err, &fe) {
			return fe
		}
		return rules.FileErrors{{File: path, Line: 1, Col: 1, Msg: err.Error()}}
	}
	if root == nil {
		return rules.FileErrors{{File: path, Line: 1, Col: 1, Msg: "subject is required"}}
	}
	var errs rules.FileErrors
	parse := func(field string, n *yaml.Node) *texttemplate.Template {
		src := f.String(n, field)
		t, err := texttemplate.New(filepath.Base(path) + ":" + field).Funcs(funcs()).Option("missingkey=error").Parse(src)
		if err == nil {
			err = fieldCheck(t.Execute)
		}
		if err != nil {
			// Lines inside the value count from the node; a block
			// scalar's first line is the one after the key.
			fe := templateError(path, err, 1, 0)
			block := n.Style == yaml.LiteralStyle || n.Style == yaml.FoldedStyle
			switch {
			case fe.Col == 0:
				fe.Col = n.Column
			case !block && fe.Line == 1:
				fe.Col += n.Column - 1
				if n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle {
					fe.Col++
				}
			}
			fe.Line += n.Line - 1
			if block {
				fe.Line++
			}
			errs = append(errs, fe)
			return nil
		}
		return t
	}
	f.Mapping(root, "the template file", func(key string, k, val *yaml.Node) {
		switch key {
		case "subject":
			v.subject = parse("subject", val)
		case "preheader":
			v.preheader = parse("preheader", val)
		default:
			f.Errorf(k, "unknown field %q: want subject or preheader", key)
		}
	})
	if v.subject == nil && !hasKey(root, "subject") {
		f.Errorf(root, "subject is required")
	}
	if err := f.Errors(); err != nil {
		var fe rules.FileErrors
		if errors.As(err, &fe) {
			errs = append(errs, fe...)
		}
	}
	return errs
}

func hasKey(n *yaml.Node, key string) bool {
	if n.Kind != yaml.MappingNode {
		return true // already reported as not a mapping
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// templateError turns a template error into a file error. Parse errors
// carry a line ("template: NAME:LINE: msg"), execution errors a line and
// column; html/template's escaping errors carry a line in their own type.
// line and col are used when the error has none.
func templateError(path string, err error, line, col int) *rules.FileError {
	var he *htmltemplate.Error
	if errors.As(err, &he) {
		if he.Line > 0 {
			line = he.Line
		}
		return &rules.FileError{File: path, Line: line, Col: col, Msg: he.Description}
	}
	msg := err.Error()
	if m := parseErrPos.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			// Execution errors count columns from 0.
			col, _ = strconv.Atoi(m[2])
			col++
		}
		msg = m[3]
		if x := execErrMsg.FindStringSubmatch(msg); x != nil {
			msg = x[1] + ": " + x[2]
		}
	}
	return &rules.FileError{File: path, Line: line, Col: col, Msg: msg}
}

// escapeCheck makes html/template escape the template now (it does so on
// the first Execute), so a context mistake such as an unclosed attribute
// is reported when the folder is loaded rather than at the first send;
// it also catches a misspelt field as fieldCheck does.
func escapeCheck(t *htmltemplate.Template) error {
	err := t.Execute(io.Discard, sampleData())
	var he *htmltemplate.Error
	if errors.As(err, &he) {
		return err
	}
	return fieldCheck(func(io.Writer, any) error { return err })
}

// fieldCheck runs a template on empty data and reports a field that Data
// does not have ({{.Profile.Nmae}}), which would fail every send. Other
// failures (a missing map key, say) depend on the data and are left for
// Render to report.
func fieldCheck(exec func(io.Writer, any) error) error {
	err := exec(io.Discard, sampleData())
	if err != nil && strings.Contains(err.Error(), "can't evaluate field") && strings.Contains(err.Error(), "email.") {
		return err
	}
	return nil
}

func sampleData() Data {
	return Data{Profile: Recipient{Traits: map[string]any{}}, Trigger: map[string]any{}, Links: map[string]string{}, Vars: map[string]any{}}
}

// Names lists the template ids, sorted.
func (t *Templates) Names() []string {
	names := make([]string, 0, len(t.byID))
	for id := range t.byID {
		names = append(names, id)
	}
	slices.Sort(names)
	return names
}

// Has reports whether a template id exists.
func (t *Templates) Has(id string) bool { _, ok := t.byID[id]; return ok }

// DefaultLocale is the locale of versions written without one.
func (t *Templates) DefaultLocale() string { return t.defaultLocale }

// pick returns the best version for a locale: the exact one ("es-mx"),
// then its language ("es"), then the default.
func (t *Templates) pick(id, locale string) (*version, error) {
	vs, ok := t.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTemplate, id)
	}
	l := NormalizeLocale(locale)
	for l != "" {
		if l == t.defaultLocale {
			break
		}
		if v, ok := vs[l]; ok {
			return v, nil
		}
		i := strings.LastIndexByte(l, '-')
		if i < 0 {
			break
		}
		l = l[:i]
	}
	return vs[""], nil
}

// Render renders a template for a locale ("es-MX" falls back to "es",
// then to the default). A missing field or map key is an error: a mail is
// never sent half-rendered.
func (t *Templates) Render(id, locale string, data Data) (*Rendered, error) {
	v, err := t.pick(id, locale)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", id, err)
	}
	data.Template, data.Locale = id, v.locale
	if data.Profile.Traits == nil {
		data.Profile.Traits = map[string]any{}
	}
	r := &Rendered{Locale: v.locale}
	var buf bytes.Buffer
	exec := func(part string, e func(io.Writer, any) error) (string, error) {
		buf.Reset()
		if err := e(&buf, data); err != nil {
			return "", fmt.Errorf("render %s.%s %s: %w", id, v.locale, part, err)
		}
		return buf.String(), nil
	}
	if r.Subject, err = exec("subject", v.subject.Execute); err != nil {
		return nil, err
	}
	r.Subject = neutralizeEncodedWords(oneLine(r.Subject))
	if v.preheader != nil {
		if r.Preheader, err = exec("preheader", v.preheader.Execute); err != nil {
			return nil, err
		}
		r.Preheader = oneLine(r.Preheader)
	}
	if r.HTML, err = exec("html", v.html.Execute); err != nil {
		return nil, err
	}
	if r.Text, err = exec("text", v.text.Execute); err != nil {
		return nil, err
	}
	if r.Preheader != "" {
		r.HTML = insertPreheader(r.HTML, r.Preheader)
	}
	return r, nil
}

// oneLine folds white space runs, new lines included, into single spaces:
// a subject is one header line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// neutralizeEncodedWords keeps text that looks like an RFC 2047 encoded
// word ("=?utf-8?b?...?=", from a first_name, say) from being decoded by
// mail clients into other text: a zero-width space after each "=" of "=?"
// breaks the syntax, and, being non-ASCII, makes the header be encoded as
// a whole, so the reader sees the characters that were sent.
func neutralizeEncodedWords(s string) string {
	return strings.ReplaceAll(s, "=?", "=\u200b?")
}

// insertPreheader puts the preview text, hidden, right after <body>
// (at the start when the document has no body tag).
func insertPreheader(doc, pre string) string {
	block := `<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">` + html.EscapeString(pre) + `</div>`
	z := html.NewTokenizer(strings.NewReader(doc))
	off := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return block + doc
		}
		off += len(z.Raw())
		if tt == html.StartTagToken {
			if name, _ := z.TagName(); string(name) == "body" {
				return doc[:off] + block + doc[off:]
			}
		}
	}
}
