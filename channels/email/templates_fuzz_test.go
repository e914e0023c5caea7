package email_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"cartera/channels/email"
	"cartera/rules"
)

// FuzzLoadTemplates: no template (subject and preheader YAML, HTML and
// text parts) makes the loader panic, and every error is a list of
// mistakes that point into one of the files.
func FuzzLoadTemplates(f *testing.F) {
	for _, id := range []string{"cart_reminder", "birthday"} {
		var parts [3]string
		for i, ext := range []string{".en.yaml", ".en.html", ".en.txt"} {
			b, _ := os.ReadFile(filepath.Join("..", "..", "examples", "templates", id+ext))
			parts[i] = string(b)
		}
		f.Add(parts[0], parts[1], parts[2])
	}
	f.Add("subject: hi", "<p>{{.Profile.Trait \"x\"}}</p>", "{{")
	f.Add("subject: [", "<a href=\"{{.Link \"shop\"}}\">", "{{end}}")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, yaml, html, text string) {
		dir := t.TempDir()
		for ext, b := range map[string]string{".yaml": yaml, ".html": html, ".txt": text} {
			if err := os.WriteFile(filepath.Join(dir, "mail"+ext), []byte(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := email.LoadTemplates(dir, "en")
		if err == nil {
			return
		}
		var errs rules.FileErrors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("LoadTemplates = %T %v, want rules.FileErrors", err, err)
		}
		for _, e := range errs {
			if filepath.Dir(e.File) != dir || e.Line < 1 || e.Col < 1 {
				t.Fatalf("error outside the files: %+v", e)
			}
		}
	})
}
