// Package email is the "email" destination of the outbox: it renders a
// journey's send with the person's locale, tracks opens, clicks and
// unsubscribes with signed links, and hands the mail to an SMTP relay —
// or, with no relay configured, writes it as an .eml file to a folder.
//
// It owns three things:
//
//   - Templates: a folder of files per template id and locale, parsed
//     once by LoadTemplates. cart_reminder.es.yaml holds the subject and
//     preheader, cart_reminder.es.html the HTML body (html/template) and
//     cart_reminder.es.txt the text body (text/template); the default
//     locale's files may leave the locale out (cart_reminder.html).
//     Render picks "es-MX", then "es", then the default. Templates see a
//     Data (see its doc for the fields and helper functions); a missing
//     field or key fails the render, never half-renders a mail.
//   - Tracker: signed, stateless tokens for /t/o/ (the open pixel),
//     /t/c/ (a click, redirected only to the URL signed in) and /t/u/
//     (unsubscribe, one-click per RFC 8058). The HTTP layer serves those
//     routes with Open, Click and Unsubscribe and records
//     TokenInfo.Outcome on the profile.
//   - Sender: the channels.Destination named "email". It re-reads the
//     person at delivery time (consent, address, locale), renders,
//     rewrites links for tracking, builds a multipart/alternative mail
//     with List-Unsubscribe headers and a Message-ID stable per message
//     key, and reports "Email Delivered" or, on a hard bounce, "Email
//     Bounced" with email consent withdrawn.
//
// It does not own the outbox (retries, backoff, dead letters: package
// channels), the HTTP routes (cmd/cartera) or the profile store (it sees
// people through channels.Profiles).
//
// Wiring, in short:
//
//	tpl, err := email.LoadTemplates("examples/templates", "en")
//	tr := &email.Tracker{Secret: secret, BaseURL: "https://cartera.example.com"}
//	cfg := email.DefaultConfig()
//	cfg.SMTPURL = os.Getenv("CARTERA_SMTP_URL") // "" writes .eml files
//	s, err := email.New(cfg, tpl, tr, people)
//	// register s with the outbox; serve /t/o/, /t/c/, /t/u/ with tr.
package email
