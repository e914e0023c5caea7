package console

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/internal/clocktest"
	"golang.org/x/crypto/bcrypt"
)

func TestMask(t *testing.T) {
	tests := []struct {
		kind, value, want string
	}{
		{"email", "ana@example.com", "a***@example.com"},
		{"email", "x@y.es", "x***@y.es"},
		{"phone", "+34600111221", "+34 6** *** **1"},
		{"phone", "+14155550123", "+1 4** *** *** 3"},
		{"phone", "not a phone", "no***"},
		{"user_id", "u-ana-42", "u-***"},
		{"user_id", "ana@example.com", "a***@example.com"},
		{"loyalty_card", "40001234", "40***"},
		{"anonymous_id", "abc", "***"},
		{"profile_id", "01a24a4311bbdac5b273609f", "01a24a4311bbdac5b273609f"},
	}
	for _, tc := range tests {
		if got := MaskIdentifier(tc.kind, tc.value); got != tc.want {
			t.Errorf("MaskIdentifier(%s, %s) = %q, want %q", tc.kind, tc.value, got, tc.want)
		}
	}
}

func TestMaskValue(t *testing.T) {
	in := map[string]any{
		"first_name": "Ana", "city_code": "MAD", "note": "write to ana@example.com",
		"contact": map[string]any{"email": "ana@example.com", "mobile": "+34600111221"},
		"consent": map[string]any{"email": true}, "tags": []any{"bo@example.com", "vip"},
		"loyalty_card": 4000123.0, "lifetime_value": 120.5,
	}
	got := compact(maskValue("", in))
	for _, leak := range []string{"Ana", "ana@", "bo@", "600111221", "4000123"} {
		if strings.Contains(got, leak) {
			t.Errorf("masked %s still holds %q", got, leak)
		}
	}
	for _, kept := range []string{`"city_code":"MAD"`, `"consent":{"email":true}`, `"vip"`, `"lifetime_value":120.5`, `"b***@example.com"`, `"+34 6** *** **1"`} {
		if !strings.Contains(got, kept) {
			t.Errorf("masked %s lacks %s", got, kept)
		}
	}
	if !strings.Contains(got, `"note":"write to a***@example.com"`) {
		t.Errorf("an address inside free text is not masked: %s", got)
	}
}

func hash(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestConfigValidate(t *testing.T) {
	good := hash(t, "a-long-password", MinPasswordCost)
	tests := []struct {
		name  string
		users []User
		ttl   time.Duration
		want  string
	}{
		{"ok", []User{{"ana", RoleAdmin, good}, {"bo", RoleViewer, good}}, time.Hour, ""},
		{"no users", nil, time.Hour, ""},
		{"short ttl", nil, time.Second, "console.session_ttl: want at least 1m"},
		{"bad role", []User{{"ana", "boss", good}}, time.Hour, `console.users[0].role: want viewer, marketer or admin, got "boss"`},
		{"twice", []User{{"ana", RoleAdmin, good}, {"ana", RoleViewer, good}}, time.Hour, `console.users[1].name: "ana" appears twice`},
		{"space", []User{{"an a", RoleAdmin, good}}, time.Hour, "console.users[0].name: want 1 to 64 characters"},
		{"plain password", []User{{"ana", RoleAdmin, "secret"}}, time.Hour, "console.users[0].password_bcrypt: not a bcrypt hash"},
		{"weak hash", []User{{"ana", RoleAdmin, hash(t, "x", 4)}}, time.Hour, "console.users[0].password_bcrypt: cost 4, want at least 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Users: tc.users, SessionTTL: tc.ttl, AuditRetention: DefaultAuditRetention}
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestUserLineAndDevLogin(t *testing.T) {
	line, err := UserLine("mara", RoleMarketer, []byte("twelve-chars"))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = `    - {name: mara, role: marketer, password_bcrypt: "`
	if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, `"}`) {
		t.Fatalf("line %q", line)
	}
	h := strings.TrimSuffix(strings.TrimPrefix(line, prefix), `"}`)
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("twelve-chars")) != nil {
		t.Error("the printed hash does not match the password")
	}
	c := Config{SessionTTL: time.Hour, AuditRetention: DefaultAuditRetention, Users: []User{{"mara", RoleMarketer, h}}}
	if err := c.Validate(); err != nil {
		t.Errorf("the printed line does not validate: %v", err)
	}
	if _, _, _, ok := c.DevLogin(); ok {
		t.Error("DevLogin without the dev user")
	}
	c.Users = append(c.Users, User{DevUser, RoleAdmin, hash(t, "another password", MinPasswordCost)})
	if _, _, _, ok := c.DevLogin(); ok {
		t.Error("DevLogin for a dev user with another password")
	}
	c.Users[1].PasswordBcrypt = hash(t, DevPassword, MinPasswordCost)
	if name, pw, role, ok := c.DevLogin(); !ok || name != DevUser || pw != DevPassword || role != RoleAdmin {
		t.Errorf("DevLogin = %s %s %s %v", name, pw, role, ok)
	}
	for _, bad := range []struct {
		name, pw string
		role     Role
	}{{"mara", "short", RoleAdmin}, {"ma ra", "twelve-chars", RoleAdmin}, {"mara", "twelve-chars", "root"}, {"m:a", "twelve-chars", RoleAdmin}} {
		if _, err := UserLine(bad.name, bad.role, []byte(bad.pw)); err == nil {
			t.Errorf("UserLine(%q, %q, %q): no error", bad.name, bad.role, bad.pw)
		}
	}
}

// openTestAudit opens an audit log in a bbolt file of its own.
func openTestAudit(t *testing.T) *Audit {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "a.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := OpenAudit(db)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuditNewestFirst(t *testing.T) {
	a := openTestAudit(t)
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i, action := range []string{"login", "reload", "erase"} {
		if err := a.Record(Entry{At: at.Add(time.Duration(i) * time.Minute), User: "ana", Role: RoleAdmin, Action: action}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.Recent(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Action != "erase" || got[1].Action != "reload" || !got[0].At.Equal(at.Add(2*time.Minute)) {
		t.Fatalf("Recent(2) = %+v, want erase then reload", got)
	}
}

func TestSessions(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour)
	a := s.create("ana", RoleAdmin, at)
	b := s.create("bo", RoleViewer, at)
	if a.id == b.id || a.csrf == b.csrf || len(a.id) != 64 || len(a.csrf) != 64 {
		t.Fatal("sessions share ids or tokens")
	}
	if s.get(a.id, at.Add(59*time.Minute)) != a {
		t.Error("session gone before its end")
	}
	if s.get(a.id, at.Add(time.Hour)) != nil {
		t.Error("session alive at its end")
	}
	if !b.checkCSRF(b.csrf) || b.checkCSRF(a.csrf) || b.checkCSRF("") {
		t.Error("CSRF check")
	}
	s.delete(b.id)
	if s.get(b.id, at) != nil {
		t.Error("deleted session alive")
	}
}

func TestRatesAndSparkline(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	list := []sample{{At: at, Accepted: 10}, {At: at.Add(time.Minute), Accepted: 70}, {At: at.Add(3 * time.Minute), Accepted: 130}, {At: at.Add(4 * time.Minute), Accepted: 5}}
	got := rates(list, func(s sample) float64 { return s.Accepted })
	want := []float64{60, 30, 5} // the restart counts from zero
	if len(got) != len(want) {
		t.Fatalf("rates = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("rates = %v, want %v", got, want)
		}
	}
	svg := string(sparkline(got, "events <b>"))
	if !strings.Contains(svg, `points="0.0,2.0 120.0,20.0 240.0,35.0"`) || strings.Contains(svg, "<b>") {
		t.Errorf("sparkline %s", svg)
	}
}

func TestAuditRetentionConfig(t *testing.T) {
	c := DefaultConfig()
	if c.AuditRetention != 365*24*time.Hour {
		t.Errorf("default audit retention %s, want a year", c.AuditRetention)
	}
	c.AuditRetention = time.Hour
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "console.audit_retention: want at least 24h, got 1h0m0s") {
		t.Errorf("Validate = %v", err)
	}
}

// TestAuditPrunedByAge: on the console's clock, entries older than the
// retention go, the rest stay, and the next entry follows on.
func TestAuditPrunedByAge(t *testing.T) {
	a := openTestAudit(t)
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	start := clock.Now()
	for d := range 400 {
		if err := a.Record(Entry{At: start.Add(time.Duration(d) * 24 * time.Hour), User: "ana", Action: fmt.Sprintf("day %d", d)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	c := &Console{cfg: cfg, audit: a, o: Options{Now: clock.Now, Log: slog.New(slog.DiscardHandler)}}
	if n := c.PruneAudit(); n != 0 {
		t.Errorf("pruned %d entries made in the future of the clock", n)
	}
	clock.Set(start.Add(399*24*time.Hour + time.Minute)) // day 399
	if n := c.PruneAudit(); n != 35 {
		t.Errorf("pruned %d, want the 35 entries older than 365 days (days 0 to 34)", n)
	}
	got, err := a.Recent(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 365 || got[len(got)-1].Action != "day 35" || got[0].Action != "day 399" {
		t.Errorf("kept %d entries, oldest %q, newest %q", len(got), got[len(got)-1].Action, got[0].Action)
	}
	if err := a.Record(Entry{At: clock.Now(), User: "ana", Action: "after"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Recent(1); got[0].Action != "after" {
		t.Errorf("newest after pruning: %+v", got)
	}
	// Over a page: 6,000 entries a year and a day old go in two
	// transactions.
	for i := range 6000 {
		if err := a.Record(Entry{At: clock.Now().Add(-366 * 24 * time.Hour), User: "bo", Action: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// They were recorded after the kept ones, so pruning stops before
	// them: the log is in the order entries were made.
	if n := c.PruneAudit(); n != 0 {
		t.Errorf("pruned %d past a newer entry", n)
	}
	clock.Set(clock.Now().Add(800 * 24 * time.Hour))
	if n := c.PruneAudit(); n != 366+6000 {
		t.Errorf("pruned %d two years on, want all %d", n, 366+6000)
	}
}
