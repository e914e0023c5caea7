package email_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cartera/channels/email"
	"cartera/rules"
)

const examplesDir = "../../examples/templates"

func loadExamples(t testing.TB) *email.Templates {
	t.Helper()
	tpl, err := email.LoadTemplates(examplesDir, "en")
	if err != nil {
		t.Fatalf("load examples: %v", err)
	}
	return tpl
}

func sampleData(traits map[string]any) email.Data {
	return email.Data{
		Profile: email.Recipient{ID: "p1", Email: "ana@example.com", Traits: traits},
		Journey: "cart_abandonment",
		Step:    "reminder",
		Trigger: map[string]any{"cart_id": "c1", "name": "Trail shoes", "url": "https://shop.example/cart/c1"},
		Links:   map[string]string{"unsubscribe": "https://cartera.example/t/u/x", "shop": "https://shop.example/"},
	}
}

func TestExampleTemplates(t *testing.T) {
	tpl := loadExamples(t)
	if got, want := tpl.Names(), []string{"birthday", "cart_reminder", "event_reminder", "survey_offer", "welcome", "welcome_gold"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, id := range tpl.Names() {
		for _, locale := range []string{"", "en", "es", "es-MX", "fr"} {
			r, err := tpl.Render(id, locale, sampleData(map[string]any{"first_name": "Ana"}))
			if err != nil {
				t.Fatalf("Render(%s, %q): %v", id, locale, err)
			}
			if r.Subject == "" || !strings.Contains(r.Subject, "Ana") {
				t.Errorf("Render(%s, %q) subject %q: want the first name", id, locale, r.Subject)
			}
			if !strings.Contains(r.HTML, "Ana") || !strings.Contains(r.Text, "Ana") {
				t.Errorf("Render(%s, %q): first name missing from a body", id, locale)
			}
			if !strings.Contains(r.HTML, "https://cartera.example/t/u/x") || !strings.Contains(r.Text, "https://cartera.example/t/u/x") {
				t.Errorf("Render(%s, %q): unsubscribe link missing", id, locale)
			}
			// Without a first name every template still reads well.
			r, err = tpl.Render(id, locale, sampleData(nil))
			if err != nil {
				t.Fatalf("Render(%s, %q) without traits: %v", id, locale, err)
			}
			if strings.Contains(r.HTML+r.Text+r.Subject, "no value") {
				t.Errorf("Render(%s, %q) without traits printed <no value>", id, locale)
			}
		}
	}
}

func TestRenderLocaleFallback(t *testing.T) {
	tpl := loadExamples(t)
	for _, tc := range []struct{ locale, want, subject string }{
		{"", "en", "Ana, your cart is waiting"},
		{"en-GB", "en", "Ana, your cart is waiting"},
		{"es", "es", "Ana, tu carrito te espera"},
		{"es-MX", "es", "Ana, tu carrito te espera"},
		{"es_mx", "es", "Ana, tu carrito te espera"},
		{"fr-FR", "en", "Ana, your cart is waiting"},
	} {
		t.Run(tc.locale, func(t *testing.T) {
			r, err := tpl.Render("cart_reminder", tc.locale, sampleData(map[string]any{"first_name": "Ana"}))
			if err != nil {
				t.Fatal(err)
			}
			if r.Locale != tc.want || r.Subject != tc.subject {
				t.Errorf("got %s %q, want %s %q", r.Locale, r.Subject, tc.want, tc.subject)
			}
		})
	}
}

func TestRenderContent(t *testing.T) {
	tpl := loadExamples(t)
	r, err := tpl.Render("cart_reminder", "en", sampleData(nil))
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "Your cart is waiting" {
		t.Errorf("subject %q", r.Subject)
	}
	for _, want := range []string{"Hi there,", "<strong>Trail shoes</strong>", `href="https://shop.example/cart/c1"`, "We kept your items for you"} {
		if !strings.Contains(r.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, r.HTML)
		}
	}
	// The preheader is hidden at the very start of the body.
	if i, j := strings.Index(r.HTML, "<body"), strings.Index(r.HTML, "display:none"); i < 0 || j < i || strings.Contains(r.HTML[i:j], "<p") {
		t.Errorf("preheader not at the start of the body:\n%s", r.HTML)
	}
	if !strings.Contains(r.Text, "Back to your cart: https://shop.example/cart/c1") || strings.Contains(r.Text, "&") {
		t.Errorf("text body:\n%s", r.Text)
	}
	// HTML escaping of personal data.
	r, err = tpl.Render("cart_reminder", "en", sampleData(map[string]any{"first_name": "<b>Eve</b>"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.HTML, "<b>Eve") || !strings.Contains(r.HTML, "&lt;b&gt;Eve") {
		t.Errorf("trait not escaped in HTML:\n%s", r.HTML)
	}
}

func TestRenderErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "strict.yaml", "subject: 'Order {{.Trigger.order_id}}'\n")
	write(t, dir, "strict.html", "<p>{{.Vars.code}}</p>")
	write(t, dir, "strict.txt", "{{.Vars.code}}")
	tpl, err := email.LoadTemplates(dir, "en")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.Render("nope", "en", email.Data{}); !errors.Is(err, email.ErrUnknownTemplate) {
		t.Errorf("unknown template: got %v", err)
	}
	_, err = tpl.Render("strict", "en", email.Data{Trigger: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "order_id") || !strings.Contains(err.Error(), "subject") {
		t.Errorf("missing trigger key: got %v", err)
	}
	_, err = tpl.Render("strict", "en", email.Data{Trigger: map[string]any{"order_id": "o1"}, Vars: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "code") || !strings.Contains(err.Error(), "html") {
		t.Errorf("missing var: got %v", err)
	}
	r, err := tpl.Render("strict", "en", email.Data{Trigger: map[string]any{"order_id": "o1"}, Vars: map[string]any{"code": "X1"}})
	if err != nil || r.Subject != "Order o1" || r.HTML != "<p>X1</p>" || r.Text != "X1" {
		t.Errorf("got %+v, %v", r, err)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// good is a whole, valid template.
var good = map[string]string{
	"ok.yaml": "subject: Hello\n",
	"ok.html": "<p>Hello</p>\n",
	"ok.txt":  "Hello\n",
}

func TestLoadTemplatesErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // file:line:col: message prefixes, in order
	}{
		{
			name: "html syntax error with its line",
			files: map[string]string{
				"a.yaml": "subject: Hi\n", "a.txt": "Hi\n",
				"a.html": "<p>one</p>\n<p>two</p>\n<p>{{if .Journey}}three</p>\n",
			},
			want: []string{"a.html:4:1: unexpected EOF"},
		},
		{
			name: "unknown function in text",
			files: map[string]string{
				"a.yaml": "subject: Hi\n", "a.html": "<p>Hi</p>",
				"a.txt": "line one\n{{shout .Journey}}\n",
			},
			want: []string{`a.txt:2:1: function "shout" not defined`},
		},
		{
			name: "misspelt field, caught at load",
			files: map[string]string{
				"a.yaml": "subject: Hi\n", "a.html": "<p>Hi</p>",
				"a.txt": "Hi\n  {{.Profile.Nmae}}\n",
			},
			want: []string{"a.txt:2:13: <.Profile.Nmae>: can't evaluate field Nmae"},
		},
		{
			name: "html escaping error",
			files: map[string]string{
				"a.yaml": "subject: Hi\n", "a.txt": "Hi",
				"a.html": "<p>Hi</p>\n<a href=\"{{if .Journey}}/search?q={{else}}/{{end}}{{.Step}}\">x</a>\n",
			},
			want: []string{"a.html:2:1: {{.Step}} appears in an ambiguous context within a URL"},
		},
		{
			name: "html left in an attribute",
			files: map[string]string{
				"a.yaml": "subject: Hi\n", "a.txt": "Hi",
				"a.html": "<p>Hi</p>\n<a href=\"{{.Journey}}>x</a>\n",
			},
			want: []string{"a.html:1:1: ends in a non-text context"},
		},
		{
			name: "unknown field and bad subject in the yaml",
			files: map[string]string{
				"a.html": "<p>Hi</p>", "a.txt": "Hi",
				"a.yaml": "# a comment\nsubject: 'Hi {{.Profile.Trait}'\nsender: me\n",
			},
			want: []string{"a.yaml:2:10: ", `a.yaml:3:1: unknown field "sender": want subject or preheader`},
		},
		{
			name: "subject missing",
			files: map[string]string{
				"a.html": "<p>Hi</p>", "a.txt": "Hi",
				"a.yaml": "preheader: Hi\n",
			},
			want: []string{"a.yaml:1:1: subject is required"},
		},
		{
			name: "yaml syntax error",
			files: map[string]string{
				"a.html": "<p>Hi</p>", "a.txt": "Hi",
				"a.yaml": "subject: Hi\n  - broken: [\n",
			},
			want: []string{"a.yaml:2:1: "},
		},
		{
			name:  "missing parts",
			files: map[string]string{"a.html": "<p>Hi</p>"},
			want:  []string{"a.html:1:1: template a is missing its subject (.yaml) part: want a.yaml beside it", "a.html:1:1: template a is missing its text part: want a.txt beside it"},
		},
		{
			name: "no default locale",
			files: map[string]string{
				"a.es.yaml": "subject: Hola\n", "a.es.html": "<p>Hola</p>", "a.es.txt": "Hola",
			},
			want: []string{"a.es.yaml:1:1: template a has no version in the default locale"},
		},
		{
			name: "default locale given twice",
			files: map[string]string{
				"a.yaml": "subject: Hi\n", "a.html": "<p>Hi</p>", "a.txt": "Hi",
				"a.en.yaml": "subject: Hi\n",
			},
			want: []string{"a.yaml:1:1: same template as a.en.yaml"},
		},
		{
			name:  "bad names",
			files: map[string]string{"Cart.yaml": "subject: x", "b.español.txt": "x"},
			want:  []string{`Cart.yaml:1:1: template id "Cart"`, `b.español.txt:1:1: locale "español"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range good {
				write(t, dir, name, content)
			}
			for name, content := range tc.files {
				write(t, dir, name, content)
			}
			write(t, dir, "README.md", "not a template")
			_, err := email.LoadTemplates(dir, "en")
			var fe rules.FileErrors
			if !errors.As(err, &fe) {
				t.Fatalf("want FileErrors, got %T %v", err, err)
			}
			if len(fe) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(fe), len(tc.want), err)
			}
			for i, w := range tc.want {
				if got := fe[i].Error(); !strings.HasPrefix(got, filepath.Join(dir, w)) {
					t.Errorf("error %d:\n got %s\nwant %s…", i, got, filepath.Join(dir, w))
				}
			}
		})
	}
}

func TestLoadTemplatesFolder(t *testing.T) {
	_, err := email.LoadTemplates(filepath.Join(t.TempDir(), "missing"), "en")
	var fe rules.FileErrors
	if !errors.As(err, &fe) || fe[0].Line != 1 {
		t.Errorf("missing folder: got %v", err)
	}
	if _, err := email.LoadTemplates(t.TempDir(), "not a locale"); err == nil {
		t.Error("bad default locale accepted")
	}
	// The default locale may also be written out; a locale of the name
	// is normalized.
	dir := t.TempDir()
	for _, n := range []string{"a.es.yaml", "a.es-MX.yaml"} {
		write(t, dir, n, "subject: "+n+"\n")
	}
	for _, n := range []string{"a.es.html", "a.es.txt", "a.es-MX.html", "a.es-MX.txt"} {
		write(t, dir, n, "x")
	}
	tpl, err := email.LoadTemplates(dir, "es")
	if err != nil {
		t.Fatal(err)
	}
	for locale, want := range map[string]string{"es-mx": "a.es-MX.yaml", "es-AR": "a.es.yaml", "": "a.es.yaml", "de": "a.es.yaml"} {
		if r, err := tpl.Render("a", locale, email.Data{}); err != nil || r.Subject != want {
			t.Errorf("Render(a, %q) = %+v, %v; want subject %s", locale, r, err, want)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	tpl := loadExamples(b)
	data := sampleData(map[string]any{"first_name": "Ana"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.Render("cart_reminder", "es-MX", data); err != nil {
			b.Fatal(err)
		}
	}
}
