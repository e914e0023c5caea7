package profiles

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Built-in identifier kinds. Config may declare more (a loyalty card number,
// a device id), each read from paths in the event.
const (
	KindUserID      = "user_id"
	KindAnonymousID = "anonymous_id"
	KindEmail       = "email"
	KindPhone       = "phone"
	// KindProfileID is not stored in the graph: it names a profile directly,
	// or a profile that was merged into another.
	KindProfileID = "profile_id"
)

// Identifier is one normalized identity of a person, such as email:ana@example.com.
type Identifier struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

func (id Identifier) String() string { return id.Kind + ":" + id.Value }

// ParseIdentifier splits "kind:value" as used in the admin API paths.
func ParseIdentifier(s string) (Identifier, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok || kind == "" || value == "" {
		return Identifier{}, invalid("identifier", "want kind:value such as email:ana@example.com, got %q", s)
	}
	return Identifier{Kind: kind, Value: value}, nil
}

// IdentityConfig declares identifier kinds, their limits and their priority.
type IdentityConfig struct {
	// DefaultRegion is the ISO country used for phone numbers written
	// without a country code (e.g. "US", "ES").
	DefaultRegion string `yaml:"default_region"`
	// Kinds declares identifier kinds beyond the built-in ones.
	Kinds []KindConfig `yaml:"kinds"`
	// Limits caps how many identifiers of a kind one profile may hold. An
	// event that would break a limit does not merge; the refusal is
	// recorded in the profile's ledger, logged and counted.
	Limits map[string]int `yaml:"limits"`
	// Priority orders kinds from most to least trusted. When an event's
	// identifiers point at profiles that cannot all merge, the event goes
	// to the profile of the highest-priority identifier.
	Priority []string `yaml:"priority"`
}

// KindConfig declares one identifier kind.
type KindConfig struct {
	Name string `yaml:"name"`
	// Paths are dotted paths into the message where the identifier may be
	// found, e.g. traits.loyalty_card or context.device.id.
	Paths []string `yaml:"paths"`
	// Normalize is how values are normalized: "trim" (default), "lower",
	// "digits", "email" or "phone".
	Normalize string `yaml:"normalize"`
}

// DefaultIdentityConfig has the built-in kinds with Segment's default limits.
func DefaultIdentityConfig() IdentityConfig {
	return IdentityConfig{
		DefaultRegion: "US",
		Limits:        map[string]int{KindUserID: 1, KindEmail: 5, KindPhone: 5, KindAnonymousID: 1000},
		Priority:      []string{KindUserID, KindEmail, KindPhone, KindAnonymousID},
	}
}

// Validate reports the first mistake in the config, naming the field.
func (c IdentityConfig) Validate() error {
	seen := map[string]bool{KindUserID: true, KindAnonymousID: true, KindEmail: true, KindPhone: true}
	for i, k := range c.Kinds {
		field := fmt.Sprintf("identity.kinds[%d]", i)
		if k.Name == "" || strings.ContainsAny(k.Name, ": /") {
			return fmt.Errorf("%s.name: want a name without ':', ' ' or '/', got %q", field, k.Name)
		}
		if k.Name == KindProfileID || seen[k.Name] {
			return fmt.Errorf("%s.name: %q is already a kind", field, k.Name)
		}
		seen[k.Name] = true
		if len(k.Paths) == 0 {
			return fmt.Errorf("%s.paths: want at least one path such as traits.%s", field, k.Name)
		}
		for j, p := range k.Paths {
			root, _, _ := strings.Cut(p, ".")
			switch root {
			case "traits", "properties", "context":
			default:
				return fmt.Errorf("%s.paths[%d]: want a path under traits, properties or context, got %q", field, j, p)
			}
		}
		switch k.Normalize {
		case "", "trim", "lower", "digits", "email", "phone":
		default:
			return fmt.Errorf("%s.normalize: want trim, lower, digits, email or phone, got %q", field, k.Normalize)
		}
	}
	for kind, n := range c.Limits {
		if !seen[kind] {
			return fmt.Errorf("identity.limits.%s: unknown kind", kind)
		}
		if n < 1 {
			return fmt.Errorf("identity.limits.%s: want at least 1, got %d", kind, n)
		}
	}
	for i, kind := range c.Priority {
		if !seen[kind] {
			return fmt.Errorf("identity.priority[%d]: unknown kind %q", i, kind)
		}
	}
	if c.DefaultRegion != "" && phonenumbers.GetCountryCodeForRegion(c.DefaultRegion) == 0 {
		return fmt.Errorf("identity.default_region: unknown region %q", c.DefaultRegion)
	}
	return nil
}

// resolver extracts and normalizes the identifiers of an event.
type resolver struct {
	region   string
	kinds    []kindRule
	limits   map[string]int
	priority map[string]int
	known    map[string]bool
}

type kindRule struct {
	name      string
	paths     [][]string
	normalize string
}

func newResolver(c IdentityConfig) *resolver {
	r := &resolver{
		region:   c.DefaultRegion,
		limits:   map[string]int{},
		priority: map[string]int{},
		known:    map[string]bool{KindUserID: true, KindAnonymousID: true, KindEmail: true, KindPhone: true},
	}
	r.kinds = append(r.kinds,
		kindRule{name: KindEmail, normalize: "email", paths: [][]string{{"traits", "email"}, {"context", "traits", "email"}}},
		kindRule{name: KindPhone, normalize: "phone", paths: [][]string{{"traits", "phone"}, {"context", "traits", "phone"}}},
	)
	for _, k := range c.Kinds {
		rule := kindRule{name: k.Name, normalize: k.Normalize}
		for _, p := range k.Paths {
			rule.paths = append(rule.paths, strings.Split(p, "."))
		}
		r.kinds = append(r.kinds, rule)
		r.known[k.Name] = true
	}
	for k, v := range DefaultIdentityConfig().Limits {
		r.limits[k] = v
	}
	for k, v := range c.Limits {
		r.limits[k] = v
	}
	// Kinds missing from the priority list rank just before anonymous
	// ids (which are the least trusted unless the list says otherwise),
	// ties broken by name for determinism.
	var rest []string
	for k := range r.known {
		if !slices.Contains(c.Priority, k) && k != KindAnonymousID {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	order := make([]string, 0, len(r.known))
	for _, k := range c.Priority {
		if k == KindAnonymousID {
			order = append(order, rest...)
			rest = nil
		}
		order = append(order, k)
	}
	order = append(order, rest...)
	if !slices.Contains(order, KindAnonymousID) {
		order = append(order, KindAnonymousID)
	}
	for i, k := range order {
		r.priority[k] = i
	}
	return r
}

func (r *resolver) limit(kind string) int {
	if n, ok := r.limits[kind]; ok {
		return n
	}
	return 1
}

// Normalize returns the canonical form of a value of a kind, or "" when the
// value is not a valid identifier of that kind.
func (r *resolver) Normalize(kind, value string) string {
	norm := ""
	switch kind {
	case KindEmail:
		norm = "email"
	case KindPhone:
		norm = "phone"
	default:
		for _, k := range r.kinds {
			if k.name == kind {
				norm = k.normalize
			}
		}
	}
	return normalize(norm, value, r.region)
}

func normalize(how, value, region string) string {
	value = strings.TrimSpace(value)
	switch how {
	case "lower":
		return strings.ToLower(value)
	case "digits":
		return digits(value)
	case "email":
		value = strings.ToLower(value)
		at := strings.IndexByte(value, '@')
		if at < 1 || at == len(value)-1 || strings.ContainsAny(value, " \t\r\n") {
			return ""
		}
		return value
	case "phone":
		return normalizePhone(value, region)
	default:
		return value
	}
}

func digits(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// normalizePhone returns E.164 (+34600111222) where the number parses as a
// valid number; otherwise its digits with a leading + when it had one, so a
// number keeps one spelling even when the library cannot place it.
func normalizePhone(value, region string) string {
	if value == "" {
		return ""
	}
	if region == "" {
		region = "US"
	}
	if n, err := phonenumbers.Parse(value, region); err == nil && phonenumbers.IsValidNumber(n) {
		return phonenumbers.Format(n, phonenumbers.E164)
	}
	d := digits(value)
	if len(d) < 5 {
		return ""
	}
	if strings.HasPrefix(value, "+") {
		return "+" + d
	}
	return d
}

// extract returns the normalized identifiers an event carries, deduplicated
// and ordered by priority (most trusted first). Alias's previousId is not
// included: which kind it is depends on the graph.
func (r *resolver) extract(e *Event) []Identifier {
	ids := make([]Identifier, 0, 4)
	add := func(kind, value string) {
		if value == "" {
			return
		}
		id := Identifier{Kind: kind, Value: value}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	add(KindUserID, strings.TrimSpace(e.UserID))
	add(KindAnonymousID, strings.TrimSpace(e.AnonymousID))
	for _, k := range r.kinds {
		for _, p := range k.paths {
			if s := stringAt(e, p); s != "" {
				add(k.name, normalize(k.normalize, s, r.region))
			}
		}
	}
	r.sort(ids)
	return ids
}

func (r *resolver) sort(ids []Identifier) {
	slices.SortStableFunc(ids, func(a, b Identifier) int {
		return cmp.Compare(r.priority[a.Kind], r.priority[b.Kind])
	})
}

// stringAt reads a string (or number) at a dotted path of an event.
func stringAt(e *Event, path []string) string {
	var cur any
	switch path[0] {
	case "traits":
		cur = e.Traits
	case "properties":
		cur = e.Properties
	case "context":
		cur = e.Context
	default:
		return ""
	}
	for _, seg := range path[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[seg]
	}
	switch v := cur.(type) {
	case string:
		return v
	case fmt.Stringer: // json.Number
		return v.String()
	default:
		return ""
	}
}
