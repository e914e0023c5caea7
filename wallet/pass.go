package wallet

import (
	"maps"
	"math"
	"reflect"
	"strconv"
	"time"

	"cartera/rules"
	"cartera/wallet/apple"
	"cartera/wallet/google"
)

// Pass is one issued pass as stored: what it shows now, and what a device
// needs to follow it. It is keyed by serial and holds the owner's profile
// id, so all of a person's passes move with a merge and go with an erase.
type Pass struct {
	Serial    string `json:"serial"`
	Template  string `json:"template"`
	ProfileID string `json:"profile_id,omitempty"`
	// Token is the pass's authenticationToken: devices present it to the
	// web service. Random per pass.
	Token string `json:"token"`
	// Tag is the update tag: it advances (from one counter for all passes)
	// whenever what the pass shows changes.
	Tag uint64 `json:"tag"`
	// Updated is the Last-Modified of the pass, in whole seconds; it
	// advances by at least a second with every change, so a device's
	// If-Modified-Since never hides one.
	Updated time.Time `json:"updated"`
	Created time.Time `json:"created"`

	Tier   string         `json:"tier"`
	Values map[string]any `json:"values"`
	// Overrides are the values journeys set (update_pass); they win over
	// the template's bindings.
	Overrides    map[string]any `json:"overrides,omitempty"`
	Barcode      string         `json:"barcode"`
	RelevantDate time.Time      `json:"relevant_date,omitzero"`
	// Message is the latest message a journey sent with the pass, for
	// Google Wallet's messages.
	Message string `json:"message,omitempty"`
	Voided  bool   `json:"voided,omitempty"`
}

// MessageField is the key of a template field that shows the latest push
// text of update_pass; with a change_message of "%@" the text reaches the
// lock screen as the notification.
const MessageField = "message"

// view is what a pass shows, computed from the profile and the overrides.
type view struct {
	Tier         string
	Values       map[string]any
	Barcode      string
	RelevantDate time.Time
}

// render computes what p should show for the profile in.
func (t *Template) render(in *rules.Input, p *Pass) view {
	v := view{Tier: t.DefaultTier, Values: make(map[string]any, len(t.Fields)), Barcode: p.Serial}
	if t.Tier != nil {
		if out, err := t.Tier.Eval(in); err == nil {
			if s, ok := out.Value().(string); ok {
				if _, known := t.Tiers[s]; known {
					v.Tier = s
				}
			}
		}
	}
	for _, f := range t.Fields {
		val := f.Default
		if f.Value != nil {
			if out, err := f.Value.Eval(in); err == nil {
				if x := plain(out.Value()); x != nil {
					val = x
				}
			}
		}
		if o, ok := p.Overrides[f.Key]; ok {
			val = o
		}
		if val != nil {
			v.Values[f.Key] = val
		}
	}
	if t.Barcode != nil {
		if out, err := t.Barcode.Eval(in); err == nil {
			if s, ok := out.Value().(string); ok && s != "" {
				v.Barcode = s
			}
		}
	}
	if t.RelevantDate != nil {
		if out, err := t.RelevantDate.Eval(in); err == nil {
			if ts, ok := out.Value().(time.Time); ok {
				v.RelevantDate = ts.UTC().Truncate(time.Second)
			}
		}
	}
	return v
}

// plain turns a CEL result into a value pass.json can show: a string or a
// number; nil for anything else.
func plain(x any) any {
	switch v := x.(type) {
	case string:
		return v
	case int64:
		return v
	case uint64:
		return int64(v)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
		return v
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	}
	return nil
}

// normal makes values compare the same after a JSON round trip (stored
// numbers come back as float64).
func normal(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case int:
			out[k] = float64(x)
		case int64:
			out[k] = float64(x)
		default:
			out[k] = v
		}
	}
	return out
}

// apply sets v on p and reports whether anything shown changed.
func (p *Pass) apply(v view) bool {
	same := p.Tier == v.Tier && p.Barcode == v.Barcode && p.RelevantDate.Equal(v.RelevantDate) &&
		reflect.DeepEqual(normal(p.Values), normal(v.Values))
	if same {
		return false
	}
	p.Tier, p.Values, p.Barcode, p.RelevantDate = v.Tier, v.Values, v.Barcode, v.RelevantDate
	return true
}

// touch advances the pass's tag and Last-Modified.
func (p *Pass) touch(tag uint64, now time.Time) {
	p.Tag = tag
	next := now.UTC().Truncate(time.Second)
	if !next.After(p.Updated) {
		next = p.Updated.Add(time.Second)
	}
	p.Updated = next
}

// ApplePass is the pass.json of p.
func (t *Template) ApplePass(p *Pass, webServiceURL string) apple.Pass {
	tr := t.tier(p.Tier)
	out := apple.Pass{
		SerialNumber:        p.Serial,
		OrganizationName:    t.Organization,
		Description:         t.Description,
		LogoText:            t.LogoText,
		WebServiceURL:       webServiceURL,
		AuthenticationToken: p.Token,
		BackgroundColor:     tr.Colors.Background,
		ForegroundColor:     tr.Colors.Foreground,
		LabelColor:          tr.Colors.Label,
		Voided:              p.Voided,
	}
	fields := &apple.Fields{}
	if !p.Voided {
		out.Barcodes = []apple.Barcode{{Format: t.BarcodeFormat, Message: p.Barcode, AltText: p.Barcode}}
		out.Locations = t.Locations
		out.RelevantDate = p.RelevantDate
		for _, f := range t.Fields {
			val, ok := p.Values[f.Key]
			if !ok || val == "" {
				continue
			}
			af := apple.Field{Key: f.Key, Label: f.Label, Value: val, ChangeMessage: f.ChangeMessage}
			switch f.Group {
			case GroupHeader:
				fields.HeaderFields = append(fields.HeaderFields, af)
			case GroupPrimary:
				fields.PrimaryFields = append(fields.PrimaryFields, af)
			case GroupSecondary:
				fields.SecondaryFields = append(fields.SecondaryFields, af)
			case GroupAuxiliary:
				fields.AuxiliaryFields = append(fields.AuxiliaryFields, af)
			case GroupBack:
				fields.BackFields = append(fields.BackFields, af)
			}
		}
	}
	out.SetFields(tr.Style, fields)
	return out
}

// GoogleClassID and GoogleObjectID name the Google Wallet class of a
// template and the object of a pass.
func GoogleClassID(issuerID, template string) string { return issuerID + "." + template }

// GoogleObjectID is the Google Wallet object id of a pass.
func GoogleObjectID(issuerID, serial string) string { return issuerID + "." + serial }

// GoogleClass is the loyalty class of the template.
func (t *Template) GoogleClass(issuerID string) google.LoyaltyClass {
	c := google.LoyaltyClass{
		ID:               GoogleClassID(issuerID, t.ID),
		IssuerName:       orElse(t.Google.IssuerName, t.Organization),
		ProgramName:      orElse(t.Google.ProgramName, t.Description),
		ReviewStatus:     google.ReviewUnderReview,
		RewardsTierLabel: "Tier",
		AccountIDLabel:   "Member",
	}
	if t.Google.LogoURL != "" {
		c.ProgramLogo = &google.Image{SourceURI: google.URI{URI: t.Google.LogoURL}}
	}
	if bg := t.tier(t.DefaultTier).Colors.Background; bg != nil {
		c.HexBackgroundColor = hexColor(*bg)
	}
	return c
}

// GoogleObject is the loyalty object of p.
func (t *Template) GoogleObject(issuerID string, p *Pass) google.LoyaltyObject {
	o := google.LoyaltyObject{
		ID:        GoogleObjectID(issuerID, p.Serial),
		ClassID:   GoogleClassID(issuerID, t.ID),
		State:     google.StateActive,
		AccountID: p.Barcode,
		Barcode:   &google.Barcode{Type: google.BarcodeQRCode, Value: p.Barcode, AlternateText: p.Barcode},
	}
	if p.Voided {
		o.State = google.StateInactive
		o.AccountID, o.Barcode = "", nil
		return o
	}
	g := t.Google
	if v, ok := p.Values[g.NameField]; ok && g.NameField != "" {
		o.AccountName = toString(v)
	}
	if v, ok := p.Values[g.PointsField]; ok && g.PointsField != "" {
		var b google.Balance
		if n, isNum := toInt(v); isNum {
			b = google.IntBalance(n)
		} else {
			b = google.StringBalance(toString(v))
		}
		o.LoyaltyPoints = &google.LoyaltyPoints{Label: orElse(g.PointsLabel, "Points"), Balance: b}
	}
	if g.TierField != "" {
		if v, ok := p.Values[g.TierField]; ok {
			o.TextModulesData = append(o.TextModulesData, google.TierModule("Tier", toString(v)))
		}
	}
	return o
}

// Clone returns a deep enough copy to change values without touching p.
func (p *Pass) Clone() *Pass {
	c := *p
	c.Values = maps.Clone(p.Values)
	c.Overrides = maps.Clone(p.Overrides)
	return &c
}

func orElse(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func hexColor(c apple.Color) string {
	const digits = "0123456789abcdef"
	b := []byte{'#', 0, 0, 0, 0, 0, 0}
	for i, v := range []uint8{c.R, c.G, c.B} {
		b[1+2*i], b[2+2*i] = digits[v>>4], digits[v&15]
	}
	return string(b)
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	}
	return ""
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		return int64(math.Round(x)), true
	}
	return 0, false
}
