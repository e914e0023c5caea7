package email

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strconv"
	"strings"

	mail "github.com/wneessen/go-mail"

	"cartera/channels"
)

// TestHeader marks a test send; its value is "1".
const TestHeader = "X-Cartera-Test"

// TestSubjectPrefix starts the subject of every test send.
const TestSubjectPrefix = "[TEST] "

var (
	// ErrBadAddress is a test send's To that is not one email address.
	ErrBadAddress = errors.New("to: want one email address")
	// ErrRender is a template that fails to render for the data given.
	ErrRender = errors.New("render failed")
	// ErrNotSent is a test send the relay refused or could not take, or
	// that could not be written to the outbox folder.
	ErrNotSent = errors.New("test send failed")
)

// Test is one test send of a template.
type Test struct {
	// To is where the test goes: the tester's address, never the
	// person's.
	To       string
	Template string
	// Locale picks the version; "" uses the person's locale, then the
	// default.
	Locale string
	// Person is whose data the template sees; nil: SampleRecipient.
	Person *channels.Profile
	// Data is a send payload's data, as a journey's send carries it:
	// "trigger" (the event's properties), "links", anything else in .Vars.
	Data map[string]any
}

// TestResult is what a test send did.
type TestResult struct {
	Locale    string `json:"locale"`
	Subject   string `json:"subject"`
	MessageID string `json:"message_id"`
	// File is the .eml file in the outbox folder when no relay is set.
	File string `json:"file,omitempty"`
}

// SampleRecipient is the person a preview or a test send shows when no
// real one is named.
func SampleRecipient(addr string) Recipient {
	return Recipient{ID: "sample", Email: addr, Traits: map[string]any{"first_name": "Ana", "last_name": "Sample"}}
}

// SendTest renders a template with a person's data and sends it at once
// to t.To, marked as a test (the TestHeader header, TestSubjectPrefix on
// the subject). It goes straight to the relay (or the outbox folder), not
// through the durable outbox: nothing is retried, no outcome event is
// recorded on anyone's profile, and journeys never see it, so it counts
// in no statistics and no frequency cap. For the same reason its links
// are not tracked (links to hosts that are not allowed are still taken
// out, as in a real send), there is no open pixel, and its unsubscribe
// link unsubscribes nobody.
func (s *Sender) SendTest(ctx context.Context, t Test) (*TestResult, error) {
	to, err := netmail.ParseAddress(t.To)
	if err != nil || strings.ContainsAny(t.To, ",;") {
		return nil, ErrBadAddress
	}
	if !s.tpl.Has(t.Template) {
		return nil, fmt.Errorf("%w %q", ErrUnknownTemplate, t.Template)
	}
	r := SampleRecipient(to.Address)
	locale := t.Locale
	if p := t.Person; p != nil {
		r = Recipient{ID: p.ID, Email: to.Address, Traits: p.Traits}
		if locale == "" {
			locale = p.Locale
		}
	}
	data := NewData(r, s.cfg.Links, t.Data)
	data.Links["unsubscribe"] = strings.TrimRight(s.tr.BaseURL, "/") + UnsubscribePath + "test"
	out, err := s.tpl.Render(t.Template, locale, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRender, err)
	}
	key := "test-" + t.Template + "-" + strconv.FormatInt(s.now().UnixNano(), 10)
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	msg.FromMailAddress(s.from)
	if err := msg.To(to.Address); err != nil {
		return nil, ErrBadAddress
	}
	if s.cfg.ReplyTo != "" {
		if err := msg.ReplyTo(s.cfg.ReplyTo); err != nil {
			return nil, fmt.Errorf("reply-to: %w", err)
		}
	}
	subject := TestSubjectPrefix + out.Subject
	msg.Subject(subject)
	msg.SetDateWithValue(s.now())
	id := s.messageID(key)
	msg.SetMessageIDWithValue(id)
	msg.SetGenHeader(mail.Header(TestHeader), "1")
	msg.SetBodyString(mail.TypeTextPlain, s.tr.FilterText(out.Text))
	msg.AddAlternativeString(mail.TypeTextHTML, s.tr.Filter(out.HTML))

	res := &TestResult{Locale: out.Locale, Subject: subject, MessageID: "<" + id + ">"}
	m := &channels.Message{Key: key, Destination: Name}
	o := &outgoing{msg: msg, to: to.Address, messageID: id}
	info := MessageInfo{Template: t.Template, Key: key}
	var result channels.Result
	if s.relay == nil {
		result = s.writeFile(m, o, info)
		if result.Err == nil {
			res.File, _ = result.Events[0].Properties["file"].(string)
		}
	} else {
		conn, err := s.dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: connect: %w", ErrNotSent, err)
		}
		result = s.send(conn, m, o, info)
		conn.close()
	}
	// The result's outcome events (Email Delivered, Email Bounced) are
	// dropped: a test send is nobody's statistics.
	if result.Err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, result.Err)
	}
	return res, nil
}
