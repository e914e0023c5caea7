package profiles

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestAuthenticate(t *testing.T) {
	srcs, err := NewSources([]SourceConfig{
		{Name: "web", WriteKeys: []string{"web-key-1-aaaaaaaa", "web-key-2-bbbbbbbb"}},
		{Name: "app", WriteKeys: []string{"app-key-cccccccc"}},
		{Name: "pos"},
	})
	if err != nil {
		t.Fatalf("NewSources: %v", err)
	}
	tests := []struct {
		key, source string
		ok          bool
	}{
		{"web-key-1-aaaaaaaa", "web", true},
		{"web-key-2-bbbbbbbb", "web", true},
		{"app-key-cccccccc", "app", true},
		{"app-key-ccccccc", "", false},
		{"APP-KEY-CCCCCCCC", "", false},
		{"app-key-cccccccc ", "", false},
		{"unknown-key-dddddddd", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if source, ok := srcs.Authenticate(tt.key); source != tt.source || ok != tt.ok {
			t.Errorf("Authenticate(%q) = %q, %v; want %q, %v", tt.key, source, ok, tt.source, tt.ok)
		}
	}
	if got := srcs.Names(); !slices.Equal(got, []string{"web", "app", "pos"}) {
		t.Errorf("Names = %v, want config order", got)
	}
	if srcs.Plan("web") != nil {
		t.Errorf("a source without a plan has one")
	}
}

func TestNewSourcesErrors(t *testing.T) {
	tests := []struct {
		name string
		cfgs []SourceConfig
		want string
	}{
		{"no name", []SourceConfig{{WriteKeys: []string{"12345678"}}}, "sources[0].name: required"},
		{"name twice", []SourceConfig{{Name: "web"}, {Name: "web"}}, `sources[1].name: source "web" declared twice`},
		{"short key", []SourceConfig{{Name: "web", WriteKeys: []string{"12345678", "1234567"}}}, "sources[0].write_keys[1]: want at least 8 characters"},
		{"empty key", []SourceConfig{{Name: "web", WriteKeys: []string{""}}}, "sources[0].write_keys[0]: want at least 8 characters"},
		{"key of two sources", []SourceConfig{{Name: "web", WriteKeys: []string{"shared-key"}}, {Name: "app", WriteKeys: []string{"shared-key"}}},
			"sources[1].write_keys[0]: key already used by source web"},
		{"bad plan", []SourceConfig{{Name: "web", Plan: &Plan{Mode: "loud"}}}, `sources[0].tracking_plan.mode: want strict or warn, got "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSources(tt.cfgs)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewSources: %v, want %s", err, tt.want)
			}
		})
	}
}

func TestPlanValidate(t *testing.T) {
	tests := []struct {
		name string
		plan Plan
		want string
	}{
		{"strict", Plan{Mode: PlanStrict}, ""},
		{"warn with rules", Plan{Mode: PlanWarn, Events: map[string]EventRule{"x": {Properties: map[string]PropertyRule{"a": {Type: "integer"}}}}}, ""},
		{"no mode", Plan{}, `tracking_plan.mode: want strict or warn, got ""`},
		{"unknown type", Plan{Mode: PlanStrict, Events: map[string]EventRule{"Order Completed": {Properties: map[string]PropertyRule{"revenue": {Type: "float"}}}}},
			`tracking_plan.events["Order Completed"].properties.revenue.type: want string, number, integer, boolean, object or array, got "float"`},
		{"enum on a number", Plan{Mode: PlanWarn, Traits: map[string]PropertyRule{"age": {Type: "number", Enum: []string{"1"}}}},
			`tracking_plan.traits.age.enum: only for string properties`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.plan.Validate("tracking_plan")
			if (tt.want == "" && err != nil) || (tt.want != "" && (err == nil || err.Error() != tt.want)) {
				t.Errorf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
}

// loadPlan reads testdata/plan.yaml as the config loader does.
func loadPlan(t *testing.T) *Plan {
	t.Helper()
	b, err := os.ReadFile("testdata/plan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p Plan
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode plan: %v", err)
	}
	if err := p.Validate("tracking_plan"); err != nil {
		t.Fatalf("plan: %v", err)
	}
	return &p
}

// TestPlanCheck runs each case under strict and warn: the violations are
// the same, only what the edge does with them differs.
func TestPlanCheck(t *testing.T) {
	tests := []struct {
		name           string
		allowUnplanned bool
		body           string // a /v1/track or /v1/identify message
		want           []string
	}{
		{name: "planned event, all right",
			body: `{"event":"Order Completed","properties":{"order_id":"o1","revenue":30.5,"items":2,"channel":"pos","gift":false,"products":[],"address":{},"note":7}}`},
		{name: "unplanned event",
			body: `{"event":"Coupon Applied","properties":{"code":"X"}}`,
			want: []string{`event: "Coupon Applied" is not in the tracking plan of source web [unplanned_event]`}},
		{name: "unplanned event allowed", allowUnplanned: true,
			body: `{"event":"Coupon Applied","properties":{"code":"X"}}`},
		{name: "missing required property",
			body: `{"event":"Order Completed","properties":{"revenue":30}}`,
			want: []string{`properties.order_id: required by the tracking plan [missing_property]`}},
		{name: "required property null",
			body: `{"event":"Order Completed","properties":{"order_id":null,"revenue":30}}`,
			want: []string{`properties.order_id: required by the tracking plan [missing_property]`}},
		{name: "wrong types",
			body: `{"event":"Order Completed","properties":{"order_id":17,"revenue":30,"items":2.5,"gift":"yes","address":[]}}`,
			want: []string{
				`properties.address: want object, got array [wrong_type]`,
				`properties.gift: want boolean, got string [wrong_type]`,
				`properties.items: want integer, got number [wrong_type]`,
				`properties.order_id: want string, got number [wrong_type]`,
			}},
		{name: "not in the enum",
			body: `{"event":"Order Completed","properties":{"order_id":"o1","revenue":30,"channel":"fax"}}`,
			want: []string{`properties.channel: want one of web, app, pos, got "fax" [not_in_enum]`}},
		{name: "extra property when allow_extra_properties is false",
			body: `{"event":"Order Completed","properties":{"order_id":"o1","revenue":30,"coupon":"X"}}`,
			want: []string{`properties.coupon: not in the tracking plan [unplanned_property]`}},
		{name: "extra property allowed by default",
			body: `{"event":"Product Viewed","properties":{"product_id":"p1","color":"red"}}`},
		{name: "several violations sorted by field",
			body: `{"event":"Order Completed","properties":{"revenue":30,"channel":"fax","zip":"28001"}}`,
			want: []string{
				`properties.channel: want one of web, app, pos, got "fax" [not_in_enum]`,
				`properties.order_id: required by the tracking plan [missing_property]`,
				`properties.zip: not in the tracking plan [unplanned_property]`,
			}},
		{name: "identify traits checked, extra traits allowed",
			body: `{"type":"identify","traits":{"email":"ana@example.com","age":"41","plan":"gold","city":"Madrid"}}`,
			want: []string{
				`traits.age: want integer, got string [wrong_type]`,
				`traits.plan: want one of free, pro, got "gold" [not_in_enum]`,
			}},
		{name: "page events are not checked",
			body: `{"type":"page","name":"Home","properties":{"anything":1}}`},
	}
	for _, mode := range []string{PlanStrict, PlanWarn} {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				plan := loadPlan(t)
				plan.Mode = mode
				plan.AllowUnplanned = tt.allowUnplanned
				body := strings.Replace(tt.body, `{`, `{"userId":"u1",`, 1)
				typ := TypeTrack
				if strings.Contains(body, `"type"`) {
					typ = ""
				}
				e, err := Decode([]byte(body), DecodeOptions{Type: typ, Source: "web", ReceivedAt: time.Now()})
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				var got []string
				for _, v := range plan.Check(e) {
					got = append(got, v.Error()+" ["+v.Reason+"]")
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("violations\n got %q\nwant %q", got, tt.want)
				}
			})
		}
	}
}
