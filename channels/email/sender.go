package email

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	netmail "net/mail"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"cartera/channels"
)

var _ channels.Destination = (*Sender)(nil)

// Name is the destination name of email messages.
const Name = "email"

// ErrNoAddress holds a message back: the person has no email address.
var ErrNoAddress = errors.New("no email address")

// Config sets up the email destination.
type Config struct {
	// SMTPURL is the relay: smtp://user:pass@host:port uses STARTTLS when
	// the server offers it (port 587 when none is given); smtps:// uses
	// implicit TLS (port 465). User and password are URL-encoded. Empty:
	// each mail is written to OutboxDir as an .eml file instead.
	SMTPURL string `yaml:"smtp_url"`
	// From is the sender, "Shop <hello@shop.example>".
	From string `yaml:"from"`
	// ReplyTo, when set, is where replies go.
	ReplyTo string `yaml:"reply_to"`
	// UnsubscribeMailto is the address of the List-Unsubscribe mailto
	// fallback; empty uses ReplyTo, or From.
	UnsubscribeMailto string `yaml:"unsubscribe_mailto"`
	// OutboxDir receives <timestamp>-<key>.eml files when SMTPURL is empty.
	OutboxDir string `yaml:"outbox_dir"`
	// Links are named URLs every template sees in .Links ("shop").
	Links map[string]string `yaml:"links"`
	// RequireConsent holds back mail to anyone who has not said yes to
	// email (opt-in). False holds back only an explicit no.
	RequireConsent bool `yaml:"require_consent"`
	// Timeout bounds connecting and each SMTP exchange.
	Timeout time.Duration `yaml:"timeout"`
	// RootCAs, when set, replaces the system roots for the relay's
	// certificate (a private CA; tests).
	RootCAs *x509.CertPool `yaml:"-"`
	// InsecureSkipVerify accepts any certificate from the relay. For
	// tests only: it lets anyone on the path read the mail.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// Logger gets the start-up note; nil discards it.
	Logger *slog.Logger `yaml:"-"`
}

// DefaultConfig writes mail to ./data/outbox as .eml files, from a
// development address, and needs an explicit yes to email.
func DefaultConfig() Config {
	return Config{
		From:           "Cartera <hello@cartera.localhost>",
		OutboxDir:      "./data/outbox",
		RequireConsent: true,
		Timeout:        30 * time.Second,
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	if _, err := netmail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("email.from: want an address such as \"Shop <hello@shop.example>\", got %q", c.From)
	}
	if c.ReplyTo != "" {
		if _, err := netmail.ParseAddress(c.ReplyTo); err != nil {
			return fmt.Errorf("email.reply_to: want an email address, got %q", c.ReplyTo)
		}
	}
	if c.UnsubscribeMailto != "" {
		if _, err := netmail.ParseAddress(c.UnsubscribeMailto); err != nil {
			return fmt.Errorf("email.unsubscribe_mailto: want an email address, got %q", c.UnsubscribeMailto)
		}
	}
	if c.SMTPURL != "" {
		if _, err := parseSMTPURL(c.SMTPURL); err != nil {
			return fmt.Errorf("email.smtp_url: %w", err)
		}
	} else if c.OutboxDir == "" {
		return errors.New("email.outbox_dir: required when smtp_url is empty")
	}
	for name, l := range c.Links {
		if !isHTTPURL(l) {
			return fmt.Errorf("email.links.%s: want an absolute http(s) URL, got %q", name, l)
		}
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("email.timeout: want a positive duration, got %s", c.Timeout)
	}
	return nil
}

// relay is a parsed SMTPURL.
type relay struct {
	host       string
	port       int
	implicit   bool
	user, pass string
}

func parseSMTPURL(s string) (*relay, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("want smtp://user:pass@host:port or smtps://…")
	}
	r := &relay{host: u.Hostname()}
	switch u.Scheme {
	case "smtp":
		r.port = 587
	case "smtps":
		r.port, r.implicit = 465, true
	default:
		return nil, fmt.Errorf("scheme %q: want smtp or smtps", u.Scheme)
	}
	if r.host == "" {
		return nil, errors.New("want a host: smtp://user:pass@host:port")
	}
	if p := u.Port(); p != "" {
		if r.port, err = strconv.Atoi(p); err != nil || r.port < 1 || r.port > 65535 {
			return nil, fmt.Errorf("port %q: want 1 to 65535", p)
		}
	}
	if u.User != nil {
		r.user = u.User.Username()
		r.pass, _ = u.User.Password()
	}
	return r, nil
}

// Sender delivers email messages: it is the "email" channels.Destination.
// It holds no connection between Deliver calls, so calls may run
// concurrently; each opens one connection for its batch.
type Sender struct {
	cfg    Config
	tpl    *Templates
	tr     *Tracker
	people channels.Profiles
	relay  *relay // nil: write .eml files
	from   *netmail.Address
	domain string // of From, for Message-IDs
	now    func() time.Time
}

// New builds the sender. With no SMTPURL it writes mail to OutboxDir
// (created if need be) and says so once in the log.
func New(cfg Config, tpl *Templates, tr *Tracker, people channels.Profiles) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new email sender: %w", err)
	}
	if tpl == nil || tr == nil || people == nil {
		return nil, errors.New("new email sender: templates, tracker and profiles are required")
	}
	if err := tr.Validate(); err != nil {
		return nil, fmt.Errorf("new email sender: %w", err)
	}
	from, _ := netmail.ParseAddress(cfg.From)
	s := &Sender{cfg: cfg, tpl: tpl, tr: tr, people: people, from: from, now: time.Now}
	if _, d, ok := strings.Cut(from.Address, "@"); ok && d != "" {
		s.domain = d
	} else {
		s.domain = "cartera.localhost"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.SMTPURL == "" {
		if err := os.MkdirAll(cfg.OutboxDir, 0o755); err != nil {
			return nil, fmt.Errorf("new email sender: outbox dir: %w", err)
		}
		log.Info("email: no smtp_url set: mail is written as .eml files to a folder, not sent", "outbox_dir", cfg.OutboxDir)
		return s, nil
	}
	s.relay, _ = parseSMTPURL(cfg.SMTPURL)
	return s, nil
}

// Name implements channels.Destination.
func (s *Sender) Name() string { return Name }

// Deliver implements channels.Destination: it renders and sends each
// message, one Result per message in order.
//
// A message is held back, permanently, when its payload is not a
// channels.SendPayload, the person is gone (Profiles returned nil), has
// not consented to email (channels.ErrNoConsent), has no address
// (ErrNoAddress), or the template fails to render. A 5xx refusal of the
// recipient or of the content is a hard bounce: a permanent error with
// an "Email Bounced" outcome that withdraws email consent. A 4xx reply
// or a network failure is retried. An accepted mail gives "Email
// Delivered". The Message-ID derives from the message key, so a retry
// after a lost reply is recognisable as the same mail.
func (s *Sender) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	results := make([]channels.Result, len(msgs))
	var conn *connection
	defer func() {
		if conn != nil {
			conn.close()
		}
	}()
	for i, msg := range msgs {
		if err := ctx.Err(); err != nil {
			results[i] = channels.Result{Err: fmt.Errorf("send email %s: %w", msg.Key, err)}
			continue
		}
		out, info, err := s.prepare(ctx, msg)
		if err != nil {
			results[i] = channels.Result{Err: fmt.Errorf("send email %s: %w", msg.Key, err)}
			continue
		}
		if s.relay == nil {
			results[i] = s.writeFile(msg, out, info)
			continue
		}
		if conn == nil {
			if conn, err = s.dial(ctx); err != nil {
				// Nothing in this batch can go now; all are retried.
				for j := i; j < len(msgs); j++ {
					results[j] = channels.Result{Err: fmt.Errorf("send email %s: connect: %w", msgs[j].Key, err)}
				}
				return results
			}
			conn.interruptOn(ctx)
		}
		results[i] = s.send(conn, msg, out, info)
		if results[i].Err != nil && !conn.usable && ctx.Err() != nil {
			results[i] = channels.Result{Err: fmt.Errorf("send email %s: interrupted: %w", msg.Key, ctx.Err())}
		}
		if results[i].Err != nil && !conn.usable {
			conn.close()
			conn = nil
		}
	}
	return results
}

// outgoing is a message ready to go.
type outgoing struct {
	msg       *mail.Msg
	to        string
	messageID string
}

// prepare looks the person up, checks consent and address, renders and
// builds the MIME message. Every error it returns is permanent except a
// failed profile look-up.
func (s *Sender) prepare(ctx context.Context, m *channels.Message) (*outgoing, MessageInfo, error) {
	info := MessageInfo{ProfileID: m.ProfileID, Journey: m.Journey, Step: m.Step, Key: m.Key}
	var p channels.SendPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil || p.Template == "" {
		return nil, info, channels.Permanent(errors.New("payload: want {\"template\": id, \"data\": {...}}"))
	}
	info.Template = p.Template
	person, err := s.people.Profile(ctx, m.ProfileID)
	if err != nil {
		return nil, info, fmt.Errorf("look up profile: %w", err)
	}
	if person == nil {
		return nil, info, channels.Permanent(errors.New("profile not found"))
	}
	if yes, said := person.Consent["email"]; (said && !yes) || (!said && s.cfg.RequireConsent) {
		return nil, info, channels.Permanent(channels.ErrNoConsent)
	}
	to := ""
	for _, e := range person.Emails {
		if a, err := netmail.ParseAddress(e); err == nil {
			to = a.Address
			break
		}
	}
	if to == "" {
		return nil, info, channels.Permanent(ErrNoAddress)
	}

	unsub := s.tr.UnsubscribeURL(info)
	data := NewData(Recipient{ID: person.ID, Email: to, Traits: person.Traits}, s.cfg.Links, p.Data)
	data.Journey, data.Step = m.Journey, m.Step
	data.Links["unsubscribe"] = unsub
	r, err := s.tpl.Render(p.Template, person.Locale, data)
	if err != nil {
		return nil, info, channels.Permanent(err)
	}

	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	msg.FromMailAddress(s.from)
	if err := msg.To(to); err != nil {
		return nil, info, channels.Permanent(fmt.Errorf("recipient: %w", err))
	}
	if s.cfg.ReplyTo != "" {
		if err := msg.ReplyTo(s.cfg.ReplyTo); err != nil {
			return nil, info, channels.Permanent(fmt.Errorf("reply-to: %w", err))
		}
	}
	msg.Subject(r.Subject)
	msg.SetDateWithValue(s.now())
	id := s.messageID(m.Key)
	msg.SetMessageIDWithValue(id)
	msg.SetGenHeader(mail.Header("X-Cartera-Key"), m.Key)
	msg.SetListUnsubscribe(unsub, s.unsubscribeMailto())
	if strings.HasPrefix(unsub, "https://") {
		// One-click (RFC 8058) needs an https URL; a dev http base keeps
		// the plain header only.
		msg.SetListUnsubscribePost()
	}
	msg.SetBodyString(mail.TypeTextPlain, s.tr.TrackText(r.Text, info))
	msg.AddAlternativeString(mail.TypeTextHTML, s.tr.Track(r.HTML, info))
	return &outgoing{msg: msg, to: to, messageID: id}, info, nil
}

// NewData is what a template sees for a person, the sender's named links
// and a send payload's data: its "trigger" map becomes .Trigger, its
// "links" (absolute http(s) URLs only) join .Links, every other key goes
// to .Vars. The caller sets Journey, Step and the "unsubscribe" link.
func NewData(r Recipient, links map[string]string, payload map[string]any) Data {
	if r.Traits == nil {
		r.Traits = map[string]any{}
	}
	data := Data{Profile: r, Trigger: map[string]any{}, Links: map[string]string{}, Vars: map[string]any{}}
	maps.Copy(data.Links, links)
	for k, v := range payload {
		switch k {
		case "trigger":
			if t, ok := v.(map[string]any); ok {
				data.Trigger = t
				continue
			}
		case "links":
			if ls, ok := v.(map[string]any); ok {
				for name, l := range ls {
					if u, ok := l.(string); ok && isHTTPURL(u) {
						data.Links[name] = u
					}
				}
				continue
			}
		}
		data.Vars[k] = v
	}
	return data
}

// messageID is stable per message key: a retry carries the same one.
func (s *Sender) messageID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "cartera." + hex.EncodeToString(sum[:16]) + "@" + s.domain
}

func (s *Sender) unsubscribeMailto() string {
	addr := s.cfg.UnsubscribeMailto
	if addr == "" {
		addr = s.cfg.ReplyTo
	}
	if addr == "" {
		addr = s.cfg.From
	}
	a, err := netmail.ParseAddress(addr)
	if err != nil {
		return ""
	}
	return "mailto:" + a.Address + "?subject=unsubscribe"
}

func delivered(info MessageInfo, messageID string) channels.Result {
	return channels.Result{Events: []channels.Outcome{{
		Event:      "Email Delivered",
		Properties: map[string]any{"journey": info.Journey, "step": info.Step, "template": info.Template, "message_id": "<" + messageID + ">"},
	}}}
}

// writeFile writes the mail to the outbox folder, atomically (a temp
// file renamed), so a reader never sees half a message.
func (s *Sender) writeFile(m *channels.Message, out *outgoing, info MessageInfo) channels.Result {
	name := s.now().UTC().Format("20060102T150405.000000000Z") + "-" + sanitize(m.Key) + ".eml"
	tmp, err := os.CreateTemp(s.cfg.OutboxDir, ".tmp-*.eml")
	if err != nil {
		return channels.Result{Err: fmt.Errorf("send email %s: write file: %w", m.Key, err)}
	}
	_, werr := out.msg.WriteTo(tmp)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(s.cfg.OutboxDir, name))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return channels.Result{Err: fmt.Errorf("send email %s: write file: %w", m.Key, werr)}
	}
	res := delivered(info, out.messageID)
	res.Events[0].Properties["file"] = name // where to look, in the outbox folder
	return res
}

// sanitize keeps a key's letters, digits, '.', '-' and '_' for a file
// name, at most 100 of them.
func sanitize(key string) string {
	b := []byte(key)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && i > 0:
		default:
			b[i] = '_'
		}
	}
	if len(b) > 100 {
		b = b[:100]
	}
	if len(b) == 0 {
		return "message"
	}
	return string(b)
}

// connection is one SMTP session for a batch.
type connection struct {
	client *mail.Client
	smtp   *smtp.Client
	// usable is false once a failure other than an SMTP reply leaves the
	// session in an unknown state.
	usable bool
	// stopInterrupt unregisters the shutdown hook that drops the
	// connection.
	stopInterrupt func() bool
}

// interruptOn drops the connection when ctx ends, so a shutdown does not
// wait for a slow relay's reply: the mail in flight fails with ctx ended,
// which the outbox does not count as an attempt, and is sent again (same
// Message-ID) after the restart. go-mail holds its lock while it waits for
// a reply, so the socket is closed under it (safe from any goroutine).
func (c *connection) interruptOn(ctx context.Context) {
	c.stopInterrupt = context.AfterFunc(ctx, func() { _ = c.smtp.Text.Close() })
}

// close says QUIT, or just drops a session in an unknown state.
func (c *connection) close() {
	if c.stopInterrupt != nil && !c.stopInterrupt() {
		c.usable = false // dropped by the interrupt
	}
	if !c.usable {
		_ = c.smtp.Close()
		return
	}
	_ = c.client.CloseWithSMTPClient(c.smtp)
}

// dial connects, says hello, starts TLS (always for smtps://, when
// offered for smtp://) and authenticates.
func (s *Sender) dial(ctx context.Context) (*connection, error) {
	r := s.relay
	tlsConf := &tls.Config{ServerName: r.host, MinVersion: tls.VersionTLS12, RootCAs: s.cfg.RootCAs, InsecureSkipVerify: s.cfg.InsecureSkipVerify} //nolint:gosec // InsecureSkipVerify is an explicit, documented test setting
	opts := []mail.Option{
		mail.WithPort(r.port),
		mail.WithTimeout(s.cfg.Timeout),
		mail.WithTLSConfig(tlsConf),
		mail.WithHELO(s.domain),
	}
	if r.implicit {
		opts = append(opts, mail.WithSSL())
	} else {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	}
	if r.user != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(r.user), mail.WithPassword(r.pass))
	}
	c, err := mail.NewClient(r.host, opts...)
	if err != nil {
		return nil, err
	}
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return nil, err
	}
	return &connection{client: c, smtp: sc, usable: true}, nil
}

// send runs one mail transaction and turns the server's answer into a
// result.
func (s *Sender) send(conn *connection, m *channels.Message, out *outgoing, info MessageInfo) channels.Result {
	c := conn.smtp
	// The connection's deadline was set at dial: give each mail its own.
	if err := c.UpdateDeadline(s.cfg.Timeout); err != nil {
		conn.usable = false
		return channels.Result{Err: fmt.Errorf("send email %s: %w", m.Key, err)}
	}
	from, err := out.msg.GetSender(false)
	if err != nil {
		return channels.Result{Err: channels.Permanent(fmt.Errorf("send email %s: sender: %w", m.Key, err))}
	}
	if err := c.Mail(from); err != nil {
		return s.failed(conn, m, info, out.to, "MAIL FROM", err)
	}
	if err := c.Rcpt("<" + out.to + ">"); err != nil {
		return s.failed(conn, m, info, out.to, "RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return s.failed(conn, m, info, out.to, "DATA", err)
	}
	if _, err := out.msg.WriteTo(w); err != nil {
		conn.usable = false
		return channels.Result{Err: fmt.Errorf("send email %s: write message: %w", m.Key, err)}
	}
	if err := w.Close(); err != nil {
		return s.failed(conn, m, info, out.to, "DATA", err)
	}
	return delivered(info, out.messageID)
}

// failed classifies a failed SMTP command. A 5xx on RCPT or DATA is a
// hard bounce; a 5xx on MAIL FROM is permanent but says nothing about
// the person; a 4xx is retried; anything else (a network failure) is
// retried on a new connection.
func (s *Sender) failed(conn *connection, m *channels.Message, info MessageInfo, to, cmd string, err error) channels.Result {
	var te *textproto.Error
	if !errors.As(err, &te) {
		conn.usable = false
		return channels.Result{Err: fmt.Errorf("send email %s: %s: %w", m.Key, cmd, err)}
	}
	// The server's words often repeat the address: keep it out of the
	// error, which the outbox stores and logs.
	reason := strings.TrimSpace(strings.NewReplacer("<"+to+">", "<recipient>", to, "<recipient>").Replace(fmt.Sprintf("%d %s", te.Code, te.Msg)))
	if rerr := conn.smtp.Reset(); rerr != nil {
		conn.usable = false
	}
	e := fmt.Errorf("send email %s: %s: %s", m.Key, cmd, reason)
	switch {
	case te.Code >= 500 && cmd != "MAIL FROM":
		return channels.Result{Err: channels.Permanent(e), Events: []channels.Outcome{{
			Event:      "Email Bounced",
			Properties: map[string]any{"journey": info.Journey, "step": info.Step, "template": info.Template, "reason": reason},
			Consent:    map[string]bool{"email": false},
		}}}
	case te.Code >= 500:
		return channels.Result{Err: channels.Permanent(e)}
	}
	return channels.Result{Err: e}
}
