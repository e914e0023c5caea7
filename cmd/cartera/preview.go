package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"cartera/channels/email"
	"cartera/profiles"
)

// previewUnsubscribe is the unsubscribe link a preview shows: it leads
// nowhere, as no mail was sent.
const previewUnsubscribe = "/t/u/preview"

// preview renders an email template for one person, or a sample person,
// and prints its subject, preheader, text and HTML. It reads the bbolt
// file read-only and sends nothing.
func (m *Main) preview(ctx context.Context, args []string) error {
	fset := newCommandFlags("preview")
	configPath := fset.String("config", "", "YAML config (default examples/cartera.yaml when present)")
	dataPath := fset.String("data", "", "bbolt file the person is read from (default: the config's data)")
	tplName := fset.String("template", "", "email template id (required)")
	locale := fset.String("locale", "", "locale to render (default: the person's locale trait, then the default locale)")
	profile := fset.String("profile", "", "the person, as kind:value (user_id:ana, email:ana@example.com); default: a sample person")
	eventPath := fset.String("event", "", "JSON file of one Segment event whose properties the template sees as .Trigger")
	if err := fset.parse(m, args, false); err != nil {
		return err
	}
	if *tplName == "" {
		return &usageError{"preview: --template is required"}
	}
	cfg, err := loadConfig(fset.visited(&serveFlags{config: *configPath, data: *dataPath}), m.Getenv)
	if err != nil {
		return err
	}
	tpl, err := loadTemplates(cfg)
	if err != nil {
		return m.reportFileErrors(err)
	}
	if tpl == nil {
		return fmt.Errorf("preview: the config names no email templates (channels.email.templates)")
	}
	if !tpl.Has(*tplName) {
		return fmt.Errorf("preview: template %q: no such email template (have %s)", *tplName, strings.Join(tpl.Names(), ", "))
	}
	payload := map[string]any{}
	if *eventPath != "" {
		trigger, err := readTrigger(*eventPath)
		if err != nil {
			return err
		}
		payload["trigger"] = trigger
	}
	who := "a sample person (no --profile)"
	r := email.SampleRecipient("ana.sample@example.com")
	if *profile != "" {
		id, err := profiles.ParseIdentifier(*profile)
		if err != nil {
			return &usageError{fmt.Sprintf("preview: --profile: %v", err)}
		}
		rd, err := profiles.OpenReader(cfg.Data, cfg.Profiles)
		if err != nil {
			return fmt.Errorf("preview: %w", err)
		}
		p, err := rd.Lookup(id)
		_ = rd.Close()
		if errors.Is(err, profiles.ErrNotFound) {
			return fmt.Errorf("preview: --profile %s: no profile holds that identifier in %s", *profile, cfg.Data)
		} else if err != nil {
			return fmt.Errorf("preview: %w", err)
		}
		cp := channelProfile(p)
		r = email.Recipient{ID: cp.ID, Traits: cp.Traits}
		if len(cp.Emails) > 0 {
			r.Email = cp.Emails[0]
		}
		if *locale == "" {
			*locale = cp.Locale
		}
		who = fmt.Sprintf("%s (profile %s)", *profile, p.ID)
	}
	data := email.NewData(r, cfg.Channels.Email.Links, payload)
	data.Links["unsubscribe"] = strings.TrimRight(cfg.PublicURL, "/") + previewUnsubscribe
	out, err := tpl.Render(*tplName, *locale, data)
	if err != nil {
		return fmt.Errorf("preview: %w", err)
	}
	// Links are shown as the person would get them, without tracking:
	// those to hosts that are not allowed are taken out.
	tr := &email.Tracker{BaseURL: cfg.PublicURL, LinkHosts: linkHosts(cfg)}
	w := &strings.Builder{}
	fmt.Fprintf(w, "Template:  %s\n", *tplName)
	fmt.Fprintf(w, "Locale:    %s\n", out.Locale)
	fmt.Fprintf(w, "Person:    %s\n", who)
	fmt.Fprintf(w, "Subject:   %s\n", out.Subject)
	fmt.Fprintf(w, "Preheader: %s\n", out.Preheader)
	fmt.Fprintf(w, "\n----- text -----\n%s", ensureNewline(tr.FilterText(out.Text)))
	fmt.Fprintf(w, "----- html -----\n%s", ensureNewline(tr.Filter(out.HTML)))
	_, err = io.WriteString(m.Stdout, w.String())
	return err
}

// readTrigger reads one Segment event (JSON) and returns its properties.
func readTrigger(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("preview: --event: %w", err)
	}
	var ev struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &ev); err != nil {
		return nil, fmt.Errorf("preview: --event %s: want one Segment event as JSON: %w", path, err)
	}
	if ev.Properties == nil {
		ev.Properties = map[string]any{}
	}
	return ev.Properties, nil
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
