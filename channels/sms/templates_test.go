package sms_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cartera/channels/sms"
	"cartera/rules"
)

func loadTemplates(t *testing.T) *sms.TextTemplates {
	t.Helper()
	ts, err := sms.LoadTextTemplates("testdata/templates", "en")
	if err != nil {
		t.Fatalf("LoadTextTemplates: %v", err)
	}
	return ts
}

func TestTextTemplatesRender(t *testing.T) {
	ts := loadTemplates(t)
	if got, want := ts.Names(), []string{"cart_reminder", "shipped", "welcome"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	if !ts.Has("welcome") || ts.Has("nope") || ts.DefaultLocale() != "en" {
		t.Errorf("Has(welcome) = %v, Has(nope) = %v, DefaultLocale = %q", ts.Has("welcome"), ts.Has("nope"), ts.DefaultLocale())
	}
	cart := map[string]any{"cart_total": 42.5, "url": "https://shop.example/c/1", "traits": map[string]any{"first_name": "Ana"}}
	noName := map[string]any{"cart_total": 42.5, "url": "https://shop.example/c/1", "traits": map[string]any{}}
	tests := []struct {
		name, id, locale string
		data             map[string]any
		want             string
	}{
		{"default", "cart_reminder", "", cart, "Hi Ana, your cart of 42.5 EUR is waiting: https://shop.example/c/1"},
		{"exact locale", "cart_reminder", "es", cart, "Hola Ana, tu carrito de 42.5 EUR te espera: https://shop.example/c/1"},
		{"region falls back to language", "cart_reminder", "es-MX", cart, "Hola Ana, tu carrito de 42.5 EUR te espera: https://shop.example/c/1"},
		{"locale with region", "cart_reminder", "en-GB", cart, "Hiya Ana, your basket of 42.5 EUR is waiting: https://shop.example/c/1"},
		{"locale case and underscore", "cart_reminder", "en_gb", cart, "Hiya Ana, your basket of 42.5 EUR is waiting: https://shop.example/c/1"},
		{"unknown region falls back to the default locale", "cart_reminder", "en-US", cart, "Hi Ana, your cart of 42.5 EUR is waiting: https://shop.example/c/1"},
		{"unknown language falls back to the default locale", "cart_reminder", "fr", cart, "Hi Ana, your cart of 42.5 EUR is waiting: https://shop.example/c/1"},
		{"absent trait through index", "cart_reminder", "", noName, "Hi, your cart of 42.5 EUR is waiting: https://shop.example/c/1"},
		{"multi-line, trimmed", "shipped", "", map[string]any{"order_id": "A-17", "tracking": map[string]any{"url": "https://t.example/A-17"}}, "Your order A-17 has shipped.\nTrack it: https://t.example/A-17"},
		{"translation only", "welcome", "pt-BR", map[string]any{"traits": map[string]any{"first_name": "Rui"}}, "Bem-vindo, Rui!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ts.Render(tt.id, tt.locale, tt.data)
			if err != nil || got != tt.want {
				t.Fatalf("Render = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestTextTemplatesRenderErrors(t *testing.T) {
	ts := loadTemplates(t)
	tests := []struct {
		name, id, locale string
		data             map[string]any
		want             string
		is               error
	}{
		{"unknown id", "nope", "", nil, `unknown sms template "nope"`, sms.ErrUnknownTemplate},
		{"no default for the locale", "welcome", "en", nil, `unknown sms template "welcome" (locale "en")`, sms.ErrUnknownTemplate},
		{"missing key", "shipped", "", map[string]any{"order_id": "A-17"},
			filepath.Join("testdata", "templates", "shipped.sms.txt") + `:2:13: at <.tracking.url>: map has no entry for key "tracking"`, nil},
		{"missing trait", "welcome", "pt", map[string]any{"traits": map[string]any{}},
			filepath.Join("testdata", "templates", "welcome.pt.sms.txt") + `:1:14: at <.traits.first_name>: map has no entry for key "first_name"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ts.Render(tt.id, tt.locale, tt.data)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Render = %q, %v; want error %s", got, err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			var fe *rules.FileError
			if tt.is == nil && !errors.As(err, &fe) {
				t.Errorf("error %T is not a *rules.FileError", err)
			}
		})
	}
}

func TestTextTemplatesFileErrors(t *testing.T) {
	_, err := sms.LoadTextTemplates("testdata/bad", "")
	var fe rules.FileErrors
	if !errors.As(err, &fe) {
		t.Fatalf("LoadTextTemplates = %v, want rules.FileErrors", err)
	}
	dir := filepath.Join("testdata", "bad")
	want := []string{
		dir + `/dup.en_GB.sms.txt:1:1: template dup (locale "en-gb") already read from ` + dir + `/dup.en-gb.sms.txt`,
		dir + `/func.sms.txt:3:16: function "money" not defined`,
		dir + `/promo.toolonglocale123.sms.txt:1:1: file name: locale "toolonglocale123": want a language tag such as es or en-GB`,
		dir + `/syntax.sms.txt:2:11: bad character U+007D '}'`,
	}
	got := strings.Split(err.Error(), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseFilesNames(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("hi\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		file, wantErr string
	}{
		{"ok.sms.txt", ""},
		{"ok-2.fr.sms.txt", ""},
		{"ok_3.zh-Hant-TW.sms.txt", ""},
		{"bad id.sms.txt", `file name: template id "bad id": want letters, digits, _ or -`},
		{".es.sms.txt", `file name: template id "": want letters, digits, _ or -`},
		{"x.e.sms.txt", `file name: locale "e": want a language tag such as es or en-GB`},
		{"x.sms", "file name: want <id>[.<locale>].sms.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p := write(tt.file)
			_, err := sms.ParseFiles("", p)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != p+":1:1: "+tt.wantErr) {
				t.Fatalf("ParseFiles = %v, want %q", err, tt.wantErr)
			}
		})
	}
	_, err := sms.ParseFiles("", filepath.Join(dir, "missing.sms.txt"))
	var fe rules.FileErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Line != 1 {
		t.Errorf("missing file: %v, want one FileError", err)
	}
	if _, err := sms.LoadTextTemplates(filepath.Join(dir, "nowhere"), ""); err == nil {
		t.Error("LoadTextTemplates of a missing folder: want an error")
	}
}

func FuzzParseFiles(f *testing.F) {
	for _, s := range []string{"Hi {{.name}", "a\n{{if .x}}", "{{ money .t }}", "x {{.a.b}} y", "{{define \"t\"}}{{.q}}{{end}}{{template \"t\" .}}", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p := filepath.Join(t.TempDir(), "f.sms.txt")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		ts, err := sms.ParseFiles("", p)
		if err != nil {
			var fe rules.FileErrors
			if !errors.As(err, &fe) || len(fe) != 1 || fe[0].File != p || fe[0].Line < 1 || fe[0].Col < 1 {
				t.Fatalf("ParseFiles(%q) = %#v, want one placed FileError", src, err)
			}
			return
		}
		// Executing with no data may fail, but as a placed error.
		if _, err := ts.Render("f", "", map[string]any{}); err != nil && !errors.Is(err, sms.ErrUnknownTemplate) {
			var fe *rules.FileError
			if !errors.As(err, &fe) || fe.Line < 1 || fe.Col < 1 {
				t.Fatalf("Render(%q) = %v, want a placed FileError", src, err)
			}
		}
	})
}

func TestTextTemplatesDefaultLocale(t *testing.T) {
	// With es as the default, cart_reminder.sms.txt is the Spanish text,
	// and so clashes with cart_reminder.es.sms.txt.
	_, err := sms.LoadTextTemplates("testdata/templates", "es")
	want := filepath.Join("testdata", "templates", "cart_reminder.sms.txt") + `:1:1: template cart_reminder (locale "es") already read from ` +
		filepath.Join("testdata", "templates", "cart_reminder.es.sms.txt")
	if err == nil || err.Error() != want {
		t.Errorf("LoadTextTemplates(es) = %v, want %s", err, want)
	}

	// With pt as the default, any locale falls back to the Portuguese text.
	ts, err := sms.ParseFiles("pt_BR", filepath.Join("testdata", "templates", "welcome.pt.sms.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ts.Render("welcome", "fr", map[string]any{"traits": map[string]any{"first_name": "Rui"}})
	if err != nil || got != "Bem-vindo, Rui!" {
		t.Errorf("Render(welcome, fr) = %q, %v", got, err)
	}

	if _, err := sms.ParseFiles("English"); err == nil || !strings.Contains(err.Error(), `default locale "English"`) {
		t.Errorf("ParseFiles with a bad default locale = %v", err)
	}
}
