package wallet

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/cel-go/common/types"
	"gopkg.in/yaml.v3"

	"cartera/rules"
	"cartera/wallet/apple"
)

// TemplateFile is the file in a template's folder that describes it.
const TemplateFile = "pass.yaml"

// Field groups of a pass, in the order pass.json lists them.
const (
	GroupHeader    = "header"
	GroupPrimary   = "primary"
	GroupSecondary = "secondary"
	GroupAuxiliary = "auxiliary"
	GroupBack      = "back"
)

var groups = []string{GroupHeader, GroupPrimary, GroupSecondary, GroupAuxiliary, GroupBack}

// Template is a pass design read from a folder: pass.yaml, the images and
// .lproj localisations beside it, and per tier a sub-folder whose files
// replace the base ones (gold/strip.png). Everything is read, checked and
// compressed once, at load.
type Template struct {
	ID           string
	Name         string
	Style        string
	Organization string
	Description  string
	LogoText     string
	Colors       Colors
	// Tier picks the tier from the profile; nil or an unknown answer
	// means DefaultTier.
	Tier        *rules.Program
	DefaultTier string
	Tiers       map[string]*Tier
	Fields      []*FieldSpec
	// Barcode is the member number the barcode carries.
	Barcode       *rules.Program
	BarcodeFormat string
	Locations     []apple.Location
	RelevantDate  *rules.Program
	Google        GoogleSpec
}

// Tier is how a tier changes the template.
type Tier struct {
	Name   string
	Style  string
	Colors Colors
	// Label is what the pass shows for the tier ("Gold").
	Label  string
	assets *apple.Assets
}

// Colors are pass colours; nil ones are left to Wallet or the template.
type Colors struct {
	Background, Foreground, Label *apple.Color
}

func (c Colors) over(base Colors) Colors {
	if c.Background == nil {
		c.Background = base.Background
	}
	if c.Foreground == nil {
		c.Foreground = base.Foreground
	}
	if c.Label == nil {
		c.Label = base.Label
	}
	return c
}

// FieldSpec is one field of the pass. Value, a CEL expression over the
// profile, binds it to profile data; a field without Value shows what
// journeys set (update_pass), or Default.
type FieldSpec struct {
	Key           string
	Group         string
	Label         string
	ChangeMessage string
	Value         *rules.Program
	Default       any
}

// GoogleSpec maps the template onto a Google Wallet loyalty class and its
// objects.
type GoogleSpec struct {
	IssuerName  string
	ProgramName string
	LogoURL     string
	// PointsField, TierField and NameField name the fields whose values
	// become loyaltyPoints.balance, the tier and accountName.
	PointsField string
	PointsLabel string
	TierField   string
	NameField   string
}

// Assets returns the files of a tier.
func (t *Template) Assets(tier string) *apple.Assets { return t.tier(tier).assets }

func (t *Template) tier(name string) *Tier {
	if tr, ok := t.Tiers[name]; ok {
		return tr
	}
	return t.Tiers[t.DefaultTier]
}

// LoadTemplates reads every template folder under dir (one sub-folder a
// template, named by its id). Every mistake comes back as rules.FileErrors.
func LoadTemplates(dir string, env *rules.Env) (map[string]*Template, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pass templates: %w", err)
	}
	out := map[string]*Template{}
	var errs rules.FileErrors
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		t, err := LoadTemplate(filepath.Join(dir, e.Name()), env)
		if err != nil {
			if fe, ok := err.(rules.FileErrors); ok {
				errs = append(errs, fe...)
				continue
			}
			return nil, err
		}
		out[t.ID] = t
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(out) == 0 {
		return nil, rules.FileErrors{{File: dir, Line: 1, Col: 1, Msg: "no pass templates: want sub-folders holding " + TemplateFile}}
	}
	return out, nil
}

// LoadTemplate reads one template folder.
func LoadTemplate(dir string, env *rules.Env) (*Template, error) {
	name := filepath.Join(dir, TemplateFile)
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read pass template: %w", err)
	}
	t, err := ParseTemplate(name, b, env)
	if err != nil {
		return nil, err
	}
	if err := t.loadAssets(dir); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseTemplate reads pass.yaml; the template's id is its folder's name.
func ParseTemplate(name string, b []byte, env *rules.Env) (*Template, error) {
	f, root, err := rules.OpenFile(name, b)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, rules.FileErrors{{File: name, Line: 1, Col: 1, Msg: "empty pass template"}}
	}
	t := &Template{ID: filepath.Base(filepath.Dir(name)), Style: apple.StyleStoreCard, Tiers: map[string]*Tier{}}
	compile := func(n *yaml.Node, field string, want *types.Type) *rules.Program {
		return f.Compile(env, f.Expr(n, field), want)
	}
	color := func(n *yaml.Node, field string) *apple.Color {
		var c apple.Color
		if err := c.UnmarshalJSON([]byte(`"` + f.String(n, field) + `"`)); err != nil {
			f.Errorf(n, "%s: %v", field, err)
			return nil
		}
		return &c
	}
	colors := func(n *yaml.Node, field string) (c Colors) {
		f.Mapping(n, field, func(key string, k, v *yaml.Node) {
			switch key {
			case "background":
				c.Background = color(v, field+".background")
			case "foreground":
				c.Foreground = color(v, field+".foreground")
			case "label":
				c.Label = color(v, field+".label")
			default:
				f.Errorf(k, "%s: unknown field %q: want background, foreground or label", field, key)
			}
		})
		return c
	}
	style := func(n *yaml.Node, field string) string {
		s := f.String(n, field)
		if !slices.Contains(apple.Styles(), s) {
			f.Errorf(n, "%s: want one of %s, got %q", field, strings.Join(apple.Styles(), ", "), s)
		}
		return s
	}
	var tiersNode *yaml.Node
	f.Mapping(root, "pass template", func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			t.Name = f.String(v, key)
		case "style":
			t.Style = style(v, key)
		case "organization":
			t.Organization = f.String(v, key)
		case "description":
			t.Description = f.String(v, key)
		case "logo_text":
			t.LogoText = f.String(v, key)
		case "colors":
			t.Colors = colors(v, key)
		case "tier":
			t.Tier = compile(v, key, types.StringType)
		case "default_tier":
			t.DefaultTier = f.String(v, key)
		case "tiers":
			tiersNode = v
		case "fields":
			t.parseFields(f, v, compile)
		case "barcode":
			f.Mapping(v, key, func(key string, k, v *yaml.Node) {
				switch key {
				case "message":
					t.Barcode = compile(v, "barcode.message", types.StringType)
				case "format":
					t.BarcodeFormat = f.String(v, "barcode.format")
				default:
					f.Errorf(k, "barcode: unknown field %q: want message or format", key)
				}
			})
		case "locations":
			f.Sequence(v, key, func(item *yaml.Node) {
				var l struct {
					Latitude     *float64 `yaml:"latitude"`
					Longitude    *float64 `yaml:"longitude"`
					RelevantText string   `yaml:"relevant_text"`
				}
				if err := item.Decode(&l); err != nil || l.Latitude == nil || l.Longitude == nil {
					f.Errorf(item, "locations: want latitude, longitude and relevant_text")
					return
				}
				t.Locations = append(t.Locations, apple.Location{Latitude: *l.Latitude, Longitude: *l.Longitude, RelevantText: l.RelevantText})
			})
		case "relevant_date":
			t.RelevantDate = compile(v, key, types.TimestampType)
		case "google":
			g := &t.Google
			settings := map[string]*string{
				"issuer_name": &g.IssuerName, "program_name": &g.ProgramName, "logo_url": &g.LogoURL,
				"points_field": &g.PointsField, "points_label": &g.PointsLabel, "tier_field": &g.TierField, "name_field": &g.NameField,
			}
			f.Mapping(v, key, func(key string, k, v *yaml.Node) {
				to, ok := settings[key]
				if !ok {
					f.Errorf(k, "google: unknown field %q: want issuer_name, program_name, logo_url, points_field, points_label, tier_field or name_field", key)
					return
				}
				*to = f.String(v, "google."+key)
			})
		default:
			f.Errorf(k, "unknown field %q: want name, style, organization, description, logo_text, colors, tier, default_tier, tiers, fields, barcode, locations, relevant_date or google", key)
		}
	})
	if tiersNode != nil {
		f.Mapping(tiersNode, "tiers", func(key string, k, v *yaml.Node) {
			tr := &Tier{Name: key, Style: t.Style, Label: strings.ToUpper(key[:1]) + key[1:]}
			f.Mapping(v, "tiers."+key, func(field string, fk, fv *yaml.Node) {
				switch field {
				case "style":
					tr.Style = style(fv, "tiers."+key+".style")
				case "colors":
					tr.Colors = colors(fv, "tiers."+key+".colors")
				case "label":
					tr.Label = f.String(fv, "tiers."+key+".label")
				default:
					f.Errorf(fk, "tiers.%s: unknown field %q: want style, colors or label", key, field)
				}
			})
			t.Tiers[key] = tr
		})
	}
	for _, req := range []struct{ name, v string }{{"organization", t.Organization}, {"description", t.Description}} {
		if req.v == "" {
			f.Errorf(root, "%s is required", req.name)
		}
	}
	if t.DefaultTier == "" {
		t.DefaultTier = "default"
	}
	if _, ok := t.Tiers[t.DefaultTier]; !ok {
		if tiersNode != nil && t.DefaultTier != "default" {
			f.Errorf(root, "default_tier %q is not one of tiers", t.DefaultTier)
		}
		t.Tiers[t.DefaultTier] = &Tier{Name: t.DefaultTier, Style: t.Style}
	}
	for _, tr := range t.Tiers {
		tr.Colors = tr.Colors.over(t.Colors)
	}
	keys := map[string]bool{}
	for _, fs := range t.Fields {
		keys[fs.Key] = true
	}
	for _, ref := range []struct{ field, key string }{{"points_field", t.Google.PointsField}, {"tier_field", t.Google.TierField}, {"name_field", t.Google.NameField}} {
		if ref.key != "" && !keys[ref.key] {
			f.Errorf(root, "google.%s: no field %q", ref.field, ref.key)
		}
	}
	if err := f.Errors(); err != nil {
		return nil, err
	}
	return t, nil
}

// parseFields reads fields: {header: [...], primary: [...], ...}.
func (t *Template) parseFields(f *rules.File, n *yaml.Node, compile func(*yaml.Node, string, *types.Type) *rules.Program) {
	seen := map[string]bool{}
	f.Mapping(n, "fields", func(group string, k, v *yaml.Node) {
		if !slices.Contains(groups, group) {
			f.Errorf(k, "fields: unknown group %q: want %s", group, strings.Join(groups, ", "))
			return
		}
		f.Sequence(v, "fields."+group, func(item *yaml.Node) {
			fs := &FieldSpec{Group: group}
			where := "fields." + group
			f.Mapping(item, where, func(key string, k, v *yaml.Node) {
				switch key {
				case "key":
					fs.Key = f.String(v, where+".key")
				case "label":
					fs.Label = f.String(v, where+".label")
				case "change_message":
					fs.ChangeMessage = f.String(v, where+".change_message")
					if !strings.Contains(fs.ChangeMessage, "%@") {
						f.Errorf(v, "%s.change_message: want %%@ where the new value goes", where)
					}
				case "value":
					fs.Value = compile(v, where+".value", nil)
				case "default":
					var d any
					if err := v.Decode(&d); err != nil {
						f.Errorf(v, "%s.default: %v", where, err)
					}
					fs.Default = d
				default:
					f.Errorf(k, "%s: unknown field %q: want key, label, value, default or change_message", where, key)
				}
			})
			switch {
			case fs.Key == "":
				f.Errorf(item, "%s: key is required", where)
			case seen[fs.Key]:
				f.Errorf(item, "%s: key %q used twice", where, fs.Key)
			}
			seen[fs.Key] = true
			t.Fields = append(t.Fields, fs)
		})
	})
}

// loadAssets reads the images and localisations of every tier.
func (t *Template) loadAssets(dir string) error {
	base := map[string][]byte{}
	perTier := map[string]map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			top, _, _ := strings.Cut(rel, "/")
			if _, ok := t.Tiers[top]; ok || strings.HasSuffix(top, ".lproj") {
				return nil
			}
			return rules.FileErrors{{File: p, Line: 1, Col: 1, Msg: "unexpected folder: want a tier's name or a .lproj localisation"}}
		}
		if rel == TemplateFile || strings.HasPrefix(path.Base(rel), ".") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		top, rest, nested := strings.Cut(rel, "/")
		if _, ok := t.Tiers[top]; ok && nested {
			if perTier[top] == nil {
				perTier[top] = map[string][]byte{}
			}
			perTier[top][rest] = b
			return nil
		}
		base[rel] = b
		return nil
	})
	if err != nil {
		if _, ok := err.(rules.FileErrors); ok {
			return err
		}
		return fmt.Errorf("read pass template %s: %w", t.ID, err)
	}
	for name, tr := range t.Tiers {
		files := make(map[string][]byte, len(base))
		for k, v := range base {
			files[k] = v
		}
		for k, v := range perTier[name] {
			files[k] = v
		}
		if _, ok := files["icon.png"]; !ok {
			return rules.FileErrors{{File: filepath.Join(dir, "icon.png"), Line: 1, Col: 1, Msg: "icon.png is required (Wallet refuses a pass without it)"}}
		}
		a, err := apple.NewAssets(files)
		if err != nil {
			return rules.FileErrors{{File: dir, Line: 1, Col: 1, Msg: err.Error()}}
		}
		tr.assets = a
	}
	return nil
}
