package profiles

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// SourceConfig declares one source of events (web, app, pos, ...): its write
// keys, how far it is trusted and, optionally, its tracking plan.
type SourceConfig struct {
	Name      string   `yaml:"name"`
	WriteKeys []string `yaml:"write_keys"`
	// Trust is TrustClient (the default: the write key ships in a web
	// page or an app, so anyone can send with it) or TrustServer (the
	// key stays on machines the business runs: the tills, the shop's
	// backend).
	Trust string `yaml:"trust"`
	// AllowEvents lets a client source send events that are otherwise
	// accepted only from server sources (ServerOnlyEvents).
	AllowEvents []string `yaml:"allow_events"`
	// IdentitySecret keys identity verification: a message whose
	// context.user_hash is the hex HMAC-SHA256 of its userId (or, without
	// one, of its traits.email, trimmed and lower-cased) under this secret
	// is verified (trust.go). The shop's backend computes the hash; the
	// secret never ships to a page or an app.
	IdentitySecret string `yaml:"identity_secret"`
	Plan           *Plan  `yaml:"tracking_plan"`
	// AllowedOrigins are the web origins ("https://shop.example") whose
	// pages may send with the source's keys, from a browser SDK; "*" is any
	// origin. Empty: no page may (servers and apps send no Origin).
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// Plan is a tracking plan: the events a source may send and the types of
// their properties ("define a clear taxonomy of events and attributes").
type Plan struct {
	// Mode is "strict" (violations are refused with a 400 naming the
	// property) or "warn" (accepted and counted).
	Mode string `yaml:"mode"`
	// AllowUnplanned lets track events not listed in Events through.
	AllowUnplanned bool `yaml:"allow_unplanned_events"`
	// Events maps a track event name to its rules.
	Events map[string]EventRule `yaml:"events"`
	// Traits are the rules for identify traits.
	Traits map[string]PropertyRule `yaml:"traits"`
}

// EventRule lists the properties of one planned event.
type EventRule struct {
	Properties map[string]PropertyRule `yaml:"properties"`
	// AllowExtra lets properties not listed through.
	AllowExtra *bool `yaml:"allow_extra_properties"`
}

// PropertyRule is the type of one property.
type PropertyRule struct {
	// Type is string, number, integer, boolean, object or array.
	Type     string   `yaml:"type"`
	Required bool     `yaml:"required"`
	Enum     []string `yaml:"enum"`
}

// Plan modes.
const (
	PlanStrict = "strict"
	PlanWarn   = "warn"
)

// Violation is one way an event breaks its source's tracking plan.
type Violation struct {
	Field string
	Msg   string
	// Reason is a bounded label for metrics.
	Reason string
}

func (v Violation) Error() string { return v.Field + ": " + v.Msg }

// Validate reports the first mistake in a plan.
func (p *Plan) Validate(field string) error {
	switch p.Mode {
	case PlanStrict, PlanWarn:
	default:
		return fmt.Errorf("%s.mode: want strict or warn, got %q", field, p.Mode)
	}
	check := func(at string, rules map[string]PropertyRule) error {
		for name, r := range rules {
			switch r.Type {
			case "", "string", "number", "integer", "boolean", "object", "array":
			default:
				return fmt.Errorf("%s.%s.type: want string, number, integer, boolean, object or array, got %q", at, name, r.Type)
			}
			if len(r.Enum) > 0 && r.Type != "" && r.Type != "string" {
				return fmt.Errorf("%s.%s.enum: only for string properties", at, name)
			}
		}
		return nil
	}
	for name, ev := range p.Events {
		if err := check(fmt.Sprintf("%s.events[%q].properties", field, name), ev.Properties); err != nil {
			return err
		}
	}
	return check(field+".traits", p.Traits)
}

// Check returns the plan's violations by an event, sorted by field.
func (p *Plan) Check(e *Event) []Violation {
	var out []Violation
	switch e.Type {
	case TypeTrack:
		rule, ok := p.Events[e.Event]
		if !ok {
			if !p.AllowUnplanned {
				out = append(out, Violation{Field: "event", Msg: fmt.Sprintf("%q is not in the tracking plan of source %s", e.Event, e.Source), Reason: "unplanned_event"})
			}
			return out
		}
		allowExtra := rule.AllowExtra == nil || *rule.AllowExtra
		out = checkProps(out, "properties", e.Properties, rule.Properties, allowExtra)
	case TypeIdentify:
		out = checkProps(out, "traits", e.Traits, p.Traits, true)
	}
	slices.SortFunc(out, func(a, b Violation) int { return strings.Compare(a.Field, b.Field) })
	return out
}

func checkProps(out []Violation, root string, got map[string]any, rules map[string]PropertyRule, allowExtra bool) []Violation {
	for name, r := range rules {
		v, ok := got[name]
		field := root + "." + name
		if !ok || v == nil {
			if r.Required {
				out = append(out, Violation{Field: field, Msg: "required by the tracking plan", Reason: "missing_property"})
			}
			continue
		}
		if r.Type != "" && !hasType(v, r.Type) {
			out = append(out, Violation{Field: field, Msg: fmt.Sprintf("want %s, got %s", r.Type, KindOf(v)), Reason: "wrong_type"})
			continue
		}
		if len(r.Enum) > 0 {
			if s, _ := v.(string); !slices.Contains(r.Enum, s) {
				out = append(out, Violation{Field: field, Msg: fmt.Sprintf("want one of %s, got %q", strings.Join(r.Enum, ", "), s), Reason: "not_in_enum"})
			}
		}
	}
	if !allowExtra {
		for name := range got {
			if _, ok := rules[name]; !ok {
				out = append(out, Violation{Field: root + "." + name, Msg: "not in the tracking plan", Reason: "unplanned_property"})
			}
		}
	}
	return out
}

func hasType(v any, typ string) bool {
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		n, ok := v.(json.Number)
		return ok && finite(n)
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	}
	return true
}

// Sources authenticates write keys and finds each source's plan and trust.
type Sources struct {
	keys    []sourceKey
	plans   map[string]*Plan
	origins map[string][]string
	sources []string
	trust   map[string]string
	allowed map[string][]string
	secrets map[string][]byte
}

type sourceKey struct {
	hash   [32]byte
	source string
}

// NewSources validates the source configs and indexes their keys and
// allowed origins.
func NewSources(cfgs []SourceConfig) (*Sources, error) {
	s := &Sources{plans: map[string]*Plan{}, origins: map[string][]string{}, trust: map[string]string{}, allowed: map[string][]string{}, secrets: map[string][]byte{}}
	seenKey := map[string]string{}
	for i, c := range cfgs {
		field := fmt.Sprintf("sources[%d]", i)
		if c.Name == "" {
			return nil, fmt.Errorf("%s.name: required", field)
		}
		if slices.Contains(s.sources, c.Name) {
			return nil, fmt.Errorf("%s.name: source %q declared twice", field, c.Name)
		}
		s.sources = append(s.sources, c.Name)
		switch c.Trust {
		case "", TrustClient:
			s.trust[c.Name] = TrustClient
		case TrustServer:
			s.trust[c.Name] = TrustServer
		default:
			return nil, fmt.Errorf("%s.trust: want client or server, got %q", field, c.Trust)
		}
		if c.IdentitySecret != "" {
			if len(c.IdentitySecret) < 16 {
				return nil, fmt.Errorf("%s.identity_secret: want at least 16 characters", field)
			}
			s.secrets[c.Name] = []byte(c.IdentitySecret)
		}
		for j, name := range c.AllowEvents {
			if strings.TrimSpace(name) == "" {
				return nil, fmt.Errorf("%s.allow_events[%d]: want an event name", field, j)
			}
			s.allowed[c.Name] = append(s.allowed[c.Name], strings.TrimSpace(name))
		}
		for j, k := range c.WriteKeys {
			if len(k) < 8 {
				return nil, fmt.Errorf("%s.write_keys[%d]: want at least 8 characters", field, j)
			}
			if other, dup := seenKey[k]; dup && other != c.Name {
				return nil, fmt.Errorf("%s.write_keys[%d]: key already used by source %s", field, j, other)
			}
			seenKey[k] = c.Name
			s.keys = append(s.keys, sourceKey{hash: sha256.Sum256([]byte(k)), source: c.Name})
		}
		origins, err := parseOrigins(field, c.AllowedOrigins)
		if err != nil {
			return nil, err
		}
		if len(origins) > 0 {
			s.origins[c.Name] = origins
		}
		if c.Plan != nil {
			if err := c.Plan.Validate(field + ".tracking_plan"); err != nil {
				return nil, err
			}
			s.plans[c.Name] = c.Plan
		}
	}
	return s, nil
}

// Authenticate returns the source of a write key. Every configured key is
// compared, in constant time, so the answer's timing says nothing about
// which keys exist.
func (s *Sources) Authenticate(key string) (string, bool) {
	h := sha256.Sum256([]byte(key))
	found := ""
	for _, k := range s.keys {
		if subtle.ConstantTimeCompare(h[:], k.hash[:]) == 1 {
			found = k.source
		}
	}
	return found, found != "" && key != ""
}

// Plan returns the tracking plan of a source, or nil.
func (s *Sources) Plan(source string) *Plan { return s.plans[source] }

// Names lists the sources in config order.
func (s *Sources) Names() []string { return s.sources }
