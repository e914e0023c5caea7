package profiles

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

func TestNormalizeEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ana@example.com", "ana@example.com"},
		{"  Ana.Garcia@Example.COM ", "ana.garcia@example.com"},
		{"\tBO+news@example.co.uk\n", "bo+news@example.co.uk"},
		{"ana", ""},
		{"@example.com", ""},
		{"ana@", ""},
		{"ana garcia@example.com", ""},
		{"ana@exam\tple.com", ""},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		if got := normalize("email", tt.in, "US"); got != tt.want {
			t.Errorf("normalize email %q = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizePhone(t *testing.T) {
	tests := []struct{ in, region, want string }{
		{"600 11 22 33", "ES", "+34600112233"},
		{"600-11-22-33", "ES", "+34600112233"},
		{"0034 600 11 22 33", "ES", "+34600112233"},
		{"+34 600 11 22 33", "US", "+34600112233"},
		{"(415) 555-2671", "US", "+14155552671"},
		{"+1 (415) 555-2671", "ES", "+14155552671"},
		{"415 555 2671", "", "+14155552671"}, // no region: US
		{"+44 20 7946 0958", "US", "+442079460958"},
		// Numbers the library cannot place keep their digits (and +).
		{"+99 12345", "US", "+9912345"},
		{"555-1234", "US", "5551234"},
		// Too short or no digits: not an identifier.
		{"12", "US", ""},
		{"call me", "US", ""},
		{"", "ES", ""},
	}
	for _, tt := range tests {
		if got := normalize("phone", tt.in, tt.region); got != tt.want {
			t.Errorf("normalize phone %q in %q = %q, want %q", tt.in, tt.region, got, tt.want)
		}
	}
}

func TestNormalizeOther(t *testing.T) {
	tests := []struct{ how, in, want string }{
		{"", "  Card 7 ", "Card 7"},
		{"trim", "\tAB-12\n", "AB-12"},
		{"lower", " ABC-def ", "abc-def"},
		{"digits", "1234-5678 90", "1234567890"},
		{"digits", "no digits", ""},
	}
	for _, tt := range tests {
		if got := normalize(tt.how, tt.in, "US"); got != tt.want {
			t.Errorf("normalize %s %q = %q, want %q", tt.how, tt.in, got, tt.want)
		}
	}
}

func TestStoreNormalize(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Identity.DefaultRegion = "ES"
	cfg.Identity.Kinds = []KindConfig{{Name: "device", Paths: []string{"context.device.id"}, Normalize: "lower"}}
	ts := openStore(t, cfg)
	tests := []struct {
		in, want Identifier
	}{
		{Identifier{KindEmail, " Ana@Example.com"}, Identifier{KindEmail, "ana@example.com"}},
		{Identifier{KindEmail, "not an email"}, Identifier{KindEmail, ""}},
		{Identifier{KindPhone, "600 11 22 33"}, Identifier{KindPhone, "+34600112233"}},
		{Identifier{KindUserID, "User-1"}, Identifier{KindUserID, "User-1"}},
		{Identifier{KindAnonymousID, "A-1"}, Identifier{KindAnonymousID, "A-1"}},
		{Identifier{KindProfileID, "0194f0c1a2b3c4d5e6f7a8b9"}, Identifier{KindProfileID, "0194f0c1a2b3c4d5e6f7a8b9"}},
		{Identifier{"device", " ABC "}, Identifier{"device", "abc"}},
	}
	for _, tt := range tests {
		got, err := ts.Normalize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := ts.Normalize(Identifier{"loyalty_card", "1"}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Normalize of an undeclared kind: %v, want ErrUnknownKind", err)
	}
}

func TestExtract(t *testing.T) {
	cfg := DefaultIdentityConfig()
	cfg.Kinds = []KindConfig{
		{Name: "loyalty_card", Paths: []string{"traits.loyalty_card", "properties.card"}, Normalize: "digits"},
		{Name: "device", Paths: []string{"context.device.id"}, Normalize: "lower"},
	}
	// The default list names anonymous_id, so kinds it leaves out would
	// rank below it; name them.
	cfg.Priority = []string{KindUserID, KindEmail, KindPhone, "loyalty_card", "device"}
	r := newResolver(cfg)
	tests := []struct {
		name string
		e    *Event
		want []Identifier
	}{
		{
			name: "ordered by priority, anonymous id last",
			e: identify("m", anon(" a1 "), user(" u1 "), traits("phone", "(415) 555-2671", "email", "Ana@Example.com"), func(e *Event) {
				e.Context = map[string]any{"device": map[string]any{"id": "DEV-9"}}
			}),
			want: []Identifier{{KindUserID, "u1"}, {KindEmail, "ana@example.com"}, {KindPhone, "+14155552671"}, {"device", "dev-9"}, {KindAnonymousID, "a1"}},
		},
		{
			name: "the same email in traits and context.traits counts once",
			e: track("m", "Signed In", anon("a1"), func(e *Event) {
				e.Traits = map[string]any{"email": "ana@example.com"}
				e.Context = map[string]any{"traits": map[string]any{"email": " ANA@example.com"}}
			}),
			want: []Identifier{{KindEmail, "ana@example.com"}, {KindAnonymousID, "a1"}},
		},
		{
			name: "numbers read as their digits, invalid values skipped",
			e:    track("m", "Card Scanned", user("u1"), props("card", json.Number("00123")), traits("email", "nope", "phone", 5)),
			want: []Identifier{{KindUserID, "u1"}, {"loyalty_card", "00123"}},
		},
		{
			name: "a path through a non-object finds nothing",
			e: track("m", "x", anon("a1"), func(e *Event) {
				e.Context = map[string]any{"device": "DEV-9"}
			}),
			want: []Identifier{{KindAnonymousID, "a1"}},
		},
		{
			name: "blank ids are not identifiers",
			e:    track("m", "x", user("  "), anon("a1")),
			want: []Identifier{{KindAnonymousID, "a1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.extract(tt.e); !slices.Equal(got, tt.want) {
				t.Errorf("extract = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPriority(t *testing.T) {
	cfg := IdentityConfig{
		Kinds:    []KindConfig{{Name: "zeta", Paths: []string{"traits.zeta"}}, {Name: "alpha", Paths: []string{"traits.alpha"}}},
		Priority: []string{KindEmail, KindUserID},
	}
	r := newResolver(cfg)
	ids := []Identifier{{KindAnonymousID, "a"}, {"zeta", "z"}, {KindPhone, "p"}, {"alpha", "x"}, {KindUserID, "u"}, {KindEmail, "e"}}
	r.sort(ids)
	var kinds []string
	for _, id := range ids {
		kinds = append(kinds, id.Kind)
	}
	// Listed kinds first in their order; the rest by name; anonymous ids last.
	want := []string{KindEmail, KindUserID, "alpha", KindPhone, "zeta", KindAnonymousID}
	if !slices.Equal(kinds, want) {
		t.Errorf("priority order %v, want %v", kinds, want)
	}
	if r.limit("zeta") != 1 || r.limit(KindEmail) != 5 || r.limit(KindAnonymousID) != 1000 {
		t.Errorf("limits zeta %d, email %d, anonymous_id %d; want 1, 5, 1000", r.limit("zeta"), r.limit(KindEmail), r.limit(KindAnonymousID))
	}
}

func TestParseIdentifier(t *testing.T) {
	tests := []struct {
		in      string
		want    Identifier
		wantErr bool
	}{
		{"email:ana@example.com", Identifier{KindEmail, "ana@example.com"}, false},
		{"phone:+34:600", Identifier{KindPhone, "+34:600"}, false},
		{"profile_id:0194f0c1a2b3c4d5e6f7a8b9", Identifier{KindProfileID, "0194f0c1a2b3c4d5e6f7a8b9"}, false},
		{"email", Identifier{}, true},
		{":ana@example.com", Identifier{}, true},
		{"email:", Identifier{}, true},
		{"", Identifier{}, true},
	}
	for _, tt := range tests {
		got, err := ParseIdentifier(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseIdentifier(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		var ve *ValidationError
		if err != nil && (!errors.As(err, &ve) || ve.Field != "identifier") {
			t.Errorf("ParseIdentifier(%q) error %v, want a ValidationError on identifier", tt.in, err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}

func TestIdentityConfigValidate(t *testing.T) {
	card := KindConfig{Name: "loyalty_card", Paths: []string{"traits.loyalty_card"}, Normalize: "digits"}
	tests := []struct {
		name   string
		modify func(*IdentityConfig)
		want   string // "" for valid
	}{
		{"default", func(*IdentityConfig) {}, ""},
		{"custom kind with limit and priority", func(c *IdentityConfig) {
			c.Kinds = []KindConfig{card}
			c.Limits["loyalty_card"] = 2
			c.Priority = append(c.Priority, "loyalty_card")
		}, ""},
		{"no region", func(c *IdentityConfig) { c.DefaultRegion = "" }, ""},
		{"kind without name", func(c *IdentityConfig) { c.Kinds = []KindConfig{{Paths: []string{"traits.x"}}} },
			`identity.kinds[0].name: want a name without ':', ' ' or '/', got ""`},
		{"kind name with a colon", func(c *IdentityConfig) { c.Kinds = []KindConfig{{Name: "a:b", Paths: []string{"traits.x"}}} },
			`identity.kinds[0].name: want a name without ':', ' ' or '/', got "a:b"`},
		{"built-in kind declared", func(c *IdentityConfig) { c.Kinds = []KindConfig{{Name: "email", Paths: []string{"traits.x"}}} },
			`identity.kinds[0].name: "email" is already a kind`},
		{"profile_id declared", func(c *IdentityConfig) { c.Kinds = []KindConfig{{Name: "profile_id", Paths: []string{"traits.x"}}} },
			`identity.kinds[0].name: "profile_id" is already a kind`},
		{"kind declared twice", func(c *IdentityConfig) { c.Kinds = []KindConfig{card, card} },
			`identity.kinds[1].name: "loyalty_card" is already a kind`},
		{"kind without paths", func(c *IdentityConfig) { c.Kinds = []KindConfig{{Name: "x"}} },
			`identity.kinds[0].paths: want at least one path such as traits.x`},
		{"path outside the message", func(c *IdentityConfig) { c.Kinds = []KindConfig{{Name: "x", Paths: []string{"traits.x", "userId"}}} },
			`identity.kinds[0].paths[1]: want a path under traits, properties or context, got "userId"`},
		{"unknown normalization", func(c *IdentityConfig) {
			c.Kinds = []KindConfig{{Name: "x", Paths: []string{"traits.x"}, Normalize: "upper"}}
		},
			`identity.kinds[0].normalize: want trim, lower, digits, email or phone, got "upper"`},
		{"limit of an unknown kind", func(c *IdentityConfig) { c.Limits["loyalty_card"] = 1 },
			`identity.limits.loyalty_card: unknown kind`},
		{"limit below one", func(c *IdentityConfig) { c.Limits[KindEmail] = 0 },
			`identity.limits.email: want at least 1, got 0`},
		{"priority of an unknown kind", func(c *IdentityConfig) { c.Priority = []string{KindUserID, "device"} },
			`identity.priority[1]: unknown kind "device"`},
		{"unknown region", func(c *IdentityConfig) { c.DefaultRegion = "XX" },
			`identity.default_region: unknown region "XX"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultIdentityConfig()
			tt.modify(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want valid", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate: %v, want %s", err, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"default", func(*Config) {}, ""},
		{"max events", func(c *Config) { c.MaxEvents = 0 }, "profiles.max_events: want at least 1, got 0"},
		{"dedupe window", func(c *Config) { c.DedupeWindow = 59e9 }, "profiles.dedupe_window: want at least 1m, got 59s"},
		{"max batch events", func(c *Config) { c.MaxBatchEvents = -1 }, "profiles.max_batch_events: want at least 1, got -1"},
		{"identity", func(c *Config) { c.Identity.DefaultRegion = "XX" }, `identity.default_region: unknown region "XX"`},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.modify(&c)
		err := c.Validate()
		if (tt.want == "" && err != nil) || (tt.want != "" && (err == nil || err.Error() != tt.want)) {
			t.Errorf("%s: Validate = %v, want %q", tt.name, err, tt.want)
		}
	}
}
