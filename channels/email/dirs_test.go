package email_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cartera/channels/email"
	"cartera/rules"
)

// writeTemplate writes the three parts of a template's default version.
func writeTemplate(t *testing.T, dir, id, subject string) {
	t.Helper()
	write(t, dir, id+".yaml", "subject: "+subject+"\n")
	write(t, dir, id+".html", "<p>"+subject+"</p>\n")
	write(t, dir, id+".txt", subject+"\n")
}

func TestLoadTemplateDirs(t *testing.T) {
	t.Run("a team's folder beside the examples", func(t *testing.T) {
		team := t.TempDir()
		writeTemplate(t, team, "review_request", "How were they?")
		tpl, err := email.LoadTemplateDirs([]string{examplesDir, team}, "en")
		if err != nil {
			t.Fatal(err)
		}
		names := tpl.Names()
		for _, want := range []string{"cart_reminder", "welcome", "review_request"} {
			if !slices.Contains(names, want) {
				t.Errorf("Names() = %v, lacks %s", names, want)
			}
		}
		r, err := tpl.Render("review_request", "es", email.Data{})
		if err != nil || r.Subject != "How were they?" {
			t.Errorf("Render = %+v, %v", r, err)
		}
		r, err = tpl.Render("welcome", "es", sampleData(nil))
		if err != nil || r.Locale != "es" {
			t.Errorf("Render(welcome, es) = %+v, %v", r, err)
		}
	})
	t.Run("the same folder twice is read once", func(t *testing.T) {
		if _, err := email.LoadTemplateDirs([]string{examplesDir, examplesDir + "/"}, "en"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the same id in two folders", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		writeTemplate(t, a, "promo", "A")
		writeTemplate(t, b, "promo", "B")
		writeTemplate(t, b, "other", "C")
		_, err := email.LoadTemplateDirs([]string{a, b}, "en")
		var fe rules.FileErrors
		if !errors.As(err, &fe) || len(fe) != 1 {
			t.Fatalf("err = %v, want one file error", err)
		}
		want := filepath.Join(b, "promo.yaml") + ":1:1: template promo is also in " + filepath.Join(a, "promo.yaml")
		if !strings.HasPrefix(fe[0].Error(), want) {
			t.Errorf("err = %q, want it to start with %q", fe[0].Error(), want)
		}
	})
	t.Run("mistakes of every folder at once", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		write(t, a, "x.yaml", "subject: {{.Nope\n")
		write(t, b, "y.yaml", "subject: ok\n")
		_, err := email.LoadTemplateDirs([]string{a, b}, "en")
		var fe rules.FileErrors
		if !errors.As(err, &fe) {
			t.Fatalf("err = %v", err)
		}
		got := fe.Error()
		if !strings.Contains(got, filepath.Join(a, "x.yaml")) || !strings.Contains(got, filepath.Join(b, "y.yaml")) {
			t.Errorf("errors name only one folder:\n%s", got)
		}
	})
}
