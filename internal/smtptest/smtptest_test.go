package smtptest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/wneessen/go-mail"

	"cartera/internal/smtptest"
)

// TestRelay sends one mail with STARTTLS and AUTH and reads it back; a
// wrong password is refused.
func TestRelay(t *testing.T) {
	relay := smtptest.Start(t, "u", "p")
	ca, err := os.ReadFile(relay.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	u, _ := url.Parse(relay.URL)
	send := func(pass string) error {
		c, err := mail.NewClient(u.Hostname(), mail.WithPort(port(t, u.Port())), mail.WithTLSPolicy(mail.TLSMandatory),
			mail.WithTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
			mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername("u"), mail.WithPassword(pass))
		if err != nil {
			return err
		}
		m := mail.NewMsg()
		_ = m.From("a@example.com")
		_ = m.To("b@example.com")
		m.Subject("hello")
		m.SetBodyString(mail.TypeTextPlain, "hi")
		return c.DialAndSend(m)
	}
	if err := send("p"); err != nil {
		t.Fatal(err)
	}
	if err := send("wrong"); err == nil {
		t.Error("a wrong password was accepted")
	}
	mails := relay.Mails()
	if len(mails) != 1 || !mails[0].TLS || mails[0].User != "u" || mails[0].To[0] != "b@example.com" || !strings.Contains(string(mails[0].Data), "Subject: hello") {
		t.Fatalf("mails = %+v", mails)
	}
}

func port(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
