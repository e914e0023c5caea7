package email_test

import (
	"testing"

	"cartera/internal/smtptest"
)

// The relay of the tests is internal/smtptest's: a real SMTP server
// (emersion/go-smtp) on a random local port, with STARTTLS (or implicit
// TLS), AUTH PLAIN, and answers chosen by the recipient's local part
// (bounce@ 550, busy@ 451, reject@ 554 after DATA).
const (
	smtpUser = "cartera"
	smtpPass = "s3cret p@ss"
)

// startMailServer starts the relay; implicitTLS makes it an smtps://
// server (TLS from the first byte) instead of STARTTLS.
func startMailServer(t *testing.T, implicitTLS bool) *smtptest.Relay {
	t.Helper()
	return smtptest.StartWith(t, smtptest.Options{User: smtpUser, Pass: smtpPass, ImplicitTLS: implicitTLS})
}
