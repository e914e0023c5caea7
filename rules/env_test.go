package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"
)

// now is the clock of every test in the package unless a test moves it.
var now = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// envFields are the computed traits the table-driven env tests declare.
var envFields = []Field{
	{Name: "orders_count", Kind: KindInt},
	{Name: "lifetime_value", Kind: KindDouble},
	{Name: "last_order_at", Kind: KindTimestamp},
	{Name: "favourite_category", Kind: KindString},
	{Name: "categories", Kind: KindList},
	{Name: "is_member", Kind: KindBool},
	{Name: "never_ordered_at", Kind: KindTimestamp},
}

func newTestEnv(t testing.TB, opts EnvOptions) *Env {
	t.Helper()
	env, err := NewEnv(envFields, opts)
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	return env
}

// testInput is a hand-built profile and event, as the engine would build
// them, with every kind of value conditions read.
func testInput() *Input {
	p := &ProfileView{
		ID: "p1",
		Traits: map[string]any{
			"plan":    "pro",
			"vip":     true,
			"age":     json.Number("42"),
			"score":   json.Number("0.75"),
			"address": map[string]any{"city": "Lisbon", "zip": json.Number("1100")},
			"tags":    []any{"a", "b"},
		},
		Consent:    map[string]bool{"email": true, "sms": false},
		Identities: map[string][]string{"email": {"ana@example.com"}, "anonymous_id": {"anon-1", "anon-2"}},
		Audiences:  []string{"customers", "vip"},
		CreatedAt:  now.Add(-30*24*time.Hour - time.Hour),
		LastSeenAt: now.Add(-2 * time.Hour),
		// By the index of envFields; never_ordered_at stays unset.
		Computed: []any{int64(3), 1250.5, now.Add(-10*24*time.Hour - time.Hour), "shoes", []any{"shoes", "bags"}, true, nil},
		Counts: func(event string, window time.Duration, at time.Time) int64 {
			if !at.Equal(now) {
				return -1 // event_count must be asked at now
			}
			switch {
			case event == "Order Completed" && window == 24*time.Hour:
				return 2
			case event == "Order Completed" && window == 7*24*time.Hour:
				return 5
			}
			return 0
		},
	}
	e := &EventView{
		Name:      "Order Completed",
		Type:      "track",
		Source:    "web",
		UserID:    "u1",
		MessageID: "m1",
		Properties: map[string]any{
			"revenue":  json.Number("120"),
			"price":    json.Number("19.99"),
			"quantity": json.Number("2"),
			"delta":    json.Number("-3"),
			"big":      json.Number("12345678901234567890"),
			"product":  map[string]any{"category": "shoes", "sku": "S-1"},
			"coupon":   nil,
		},
		Context:   map[string]any{"ip": "192.0.2.1"},
		Timestamp: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	return &Input{Profile: p, Event: e, Trigger: &EventView{Name: "Signed Up", Type: "track"}, Now: now}
}

func TestEnvEval(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	tests := []struct {
		name string
		expr string
		want bool
	}{
		// Traits, as stored: strings, bools, JSON numbers, nested values.
		{"trait string", `profile.traits.plan == "pro"`, true},
		{"trait bool", `profile.traits.vip == true`, true},
		{"trait bool bare", `profile.traits.vip`, true},
		{"trait json int vs int", `profile.traits.age == 42`, true},
		{"trait json int vs double", `profile.traits.age >= 41.5`, true},
		{"trait json double vs double", `profile.traits.score == 0.75`, true},
		{"trait json double vs int", `profile.traits.score < 1`, true},
		{"nested trait", `profile.traits.address.city == "Lisbon" && profile.traits.address.zip == 1100`, true},
		{"list trait", `profile.traits.tags[1] == "b" && size(profile.traits.tags) == 2`, true},
		{"absent trait via in", `!("churned" in profile.traits)`, true},
		{"present trait via has", `has(profile.traits.plan)`, true},
		{"absent trait via has", `has(profile.traits.churned)`, false},

		// Consent and has_consent.
		{"consent map", `profile.consent.email`, true},
		{"has_consent granted", `has_consent("email")`, true},
		{"has_consent refused", `has_consent("sms")`, false},
		{"has_consent never asked", `has_consent("push")`, false},

		// Identities.
		{"identity kind present", `"email" in profile.identities`, true},
		{"identity kind absent", `"phone" in profile.identities`, false},
		{"identity value", `profile.identities.email[0] == "ana@example.com"`, true},
		{"identities per kind", `size(profile.identities.anonymous_id) == 2`, true},

		// Audiences and in_audience.
		{"audience list", `"vip" in profile.audiences`, true},
		{"in_audience member", `in_audience("customers")`, true},
		{"in_audience not member", `in_audience("churned")`, false},

		// Computed traits, typed as declared.
		{"computed int", `profile.computed.orders_count == 3`, true},
		{"computed double", `profile.computed.lifetime_value > 1000.0`, true},
		{"computed double vs int literal", `profile.computed.lifetime_value > 1000`, true},
		{"computed string", `profile.computed.favourite_category == "shoes"`, true},
		{"computed list", `"bags" in profile.computed.categories`, true},
		{"computed bool", `profile.computed.is_member`, true},
		{"computed set", `has(profile.computed.orders_count)`, true},
		{"computed unset", `has(profile.computed.never_ordered_at)`, false},

		// days_since: whole days between a timestamp and now.
		{"days_since computed", `days_since(profile.computed.last_order_at) == 10`, true},
		{"days_since created_at", `days_since(profile.created_at) == 30`, true},
		{"days_since last_seen_at", `days_since(profile.last_seen_at) == 0`, true},
		{"days_since unset is far away", `days_since(profile.computed.never_ordered_at) > 36500`, true},

		// event_count through ProfileView.Counts, asked at now.
		{"event_count 24h", `event_count("Order Completed", duration("24h")) == 2`, true},
		{"event_count 7d", `event_count("Order Completed", duration("168h")) == 5`, true},
		{"event_count other event", `event_count("Product Viewed", duration("24h")) == 0`, true},

		// Events: fields, JSON numbers in properties, nested properties.
		{"event fields", `event.name == "Order Completed" && event.type == "track" && event.source == "web" && event.user_id == "u1" && event.message_id == "m1"`, true},
		{"event context", `event.context.ip == "192.0.2.1"`, true},
		{"json int == int", `event.properties.revenue == 120`, true},
		{"json int == double", `event.properties.revenue == 120.0`, true},
		{"json int > double", `event.properties.revenue > 99.5`, true},
		{"json int arithmetic", `event.properties.quantity + 1 == 3`, true},
		{"json negative int", `event.properties.delta < 0`, true},
		{"json double == double", `event.properties.price == 19.99`, true},
		{"json double < int", `event.properties.price < 20`, true},
		{"json double > int", `event.properties.price > 19`, true},
		{"json double arithmetic", `event.properties.price * 2.0 == 39.98`, true},
		{"json beyond int64 is double", `event.properties.big > 1.0e19 && event.properties.big < 1.3e19`, true},
		{"nested property", `event.properties.product.category == "shoes"`, true},
		{"null property", `event.properties.coupon == null`, true},
		{"missing property via has", `has(event.properties.discount)`, false},
		{"trigger", `trigger.name == "Signed Up"`, true},

		// Timestamps.
		{"event before now", `event.timestamp < now`, true},
		{"timestamp literal", `event.timestamp == timestamp("2026-03-01T12:00:00Z")`, true},
		{"timestamp difference", `now - event.timestamp == duration("21h")`, true},
		{"timestamp plus duration", `event.timestamp + duration("21h") == now`, true},
		{"timestamp parts in UTC", `event.timestamp.getFullYear() == 2026 && event.timestamp.getHours() == 12`, true},
		{"profile times", `profile.last_seen_at > profile.created_at`, true},
		{"computed timestamp", `profile.computed.last_order_at < now - duration("240h")`, true},

		// Extensions Cartera enables.
		{"math ext", `math.least(0.3, 0.1 * double(profile.computed.orders_count)) == 0.3`, true},
		{"strings ext", `profile.traits.plan.upperAscii() == "PRO"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prg, err := env.Compile(tt.expr, types.BoolType)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.expr, err)
			}
			got, err := prg.Bool(testInput())
			if err != nil {
				t.Fatalf("Bool(%q): %v", tt.expr, err)
			}
			if got != tt.want {
				t.Errorf("%s = %v, want %v", tt.expr, got, tt.want)
			}
		})
	}
}

func TestEnvEvalValues(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	tests := []struct {
		expr string
		want any
	}{
		{`days_since(profile.computed.last_order_at)`, int64(10)},
		{`days_since(profile.computed.never_ordered_at)`, int64(math.MaxInt32)},
		{`event_count("Order Completed", duration("24h"))`, int64(2)},
		{`event.properties.revenue`, int64(120)},
		{`event.properties.price`, 19.99},
		{`event.properties.big`, 12345678901234567890.0},
		{`profile.computed.lifetime_value`, 1250.5},
		{`event.properties.revenue * 2`, int64(240)},
	}
	for _, tt := range tests {
		prg, err := env.Compile(tt.expr, nil)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.expr, err)
		}
		out, err := prg.Eval(testInput())
		if err != nil {
			t.Fatalf("Eval(%q): %v", tt.expr, err)
		}
		if out.Value() != tt.want {
			t.Errorf("%s = %v (%T), want %v (%T)", tt.expr, out.Value(), out.Value(), tt.want, tt.want)
		}
	}
}

// TestEnvZeroValues checks that unset computed traits read as their kind's
// zero, and that a profile with no maps at all can still be evaluated.
func TestEnvZeroValues(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	in := &Input{Profile: &ProfileView{ID: "empty"}, Event: &EventView{}, Now: now}
	for _, expr := range []string{
		`profile.computed.orders_count == 0`,
		`profile.computed.lifetime_value == 0.0`,
		`profile.computed.favourite_category == ""`,
		`size(profile.computed.categories) == 0`,
		`!profile.computed.is_member`,
		`profile.computed.last_order_at == timestamp("0001-01-01T00:00:00Z")`,
		`size(profile.traits) == 0 && size(profile.consent) == 0 && size(profile.identities) == 0`,
		`size(profile.audiences) == 0 && !in_audience("vip") && !has_consent("email")`,
		`event_count("Order Completed", duration("24h")) == 0`,
		`size(event.properties) == 0 && event.name == ""`,
	} {
		prg, err := env.Compile(expr, types.BoolType)
		if err != nil {
			t.Fatalf("Compile(%q): %v", expr, err)
		}
		got, err := prg.Bool(in)
		if err != nil || !got {
			t.Errorf("%s = %v, %v; want true, nil", expr, got, err)
		}
	}
}

func TestEnvEvalErrors(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	tests := []struct {
		name string
		expr string
		in   *Input
		want string
	}{
		{"missing trait key", `profile.traits.churned == true`, testInput(), "no such key"},
		{"no event in input", `event.name == "x"`, &Input{Profile: &ProfileView{}, Now: now}, "event"},
		{"dyn that is not bool", `profile.traits.plan`, testInput(), "want bool"},
		// Compiles (the type is declared), refused when run.
		{"constructing a profile", `cartera.Profile{id: "x"}.id == "x"`, testInput(), "cartera.Profile cannot be constructed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prg, err := env.Compile(tt.expr, nil)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.expr, err)
			}
			got, err := prg.Bool(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Bool(%q) = %v, %v; want an error containing %q", tt.expr, got, err, tt.want)
			}
			if got {
				t.Errorf("Bool(%q) = true with an error, want false", tt.expr)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tt.expr)) {
				t.Errorf("error %q does not quote the expression", err)
			}
		})
	}
}

func TestEnvCompileErrors(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	const eventCountMsg = "event_count needs a literal event name and a positive literal duration"
	tests := []struct {
		name      string
		expr      string
		want      *types.Type
		line, col int
		msg       string
	}{
		// Columns are 1-based and point at the operator, the selecting dot,
		// or the opening parenthesis of the call, as CEL locates them.
		{"type error", `profile.computed.orders_count > "five"`, types.BoolType, 1, 31, "no matching overload for '_>_' applied to '(int, string)'"},
		{"type error on line 2", "profile.traits.vip == true ||\n  profile.computed.orders_count > \"five\"", types.BoolType, 2, 33, "no matching overload for '_>_'"},
		{"type error timestamp vs int", `event.timestamp > 1`, types.BoolType, 1, 17, "'(timestamp, int)'"},
		{"undefined computed field", `profile.computed.nope > 1`, types.BoolType, 1, 17, "undefined field 'nope'"},
		{"undefined profile field", `profile.email == "x"`, types.BoolType, 1, 8, "undefined field 'email'"},
		{"undeclared variable", `user.id == "x"`, types.BoolType, 1, 1, "undeclared reference to 'user'"},
		{"syntax error", `profile.traits.vip ==== true`, types.BoolType, 1, 22, "Syntax error"},
		{"syntax error at end", `profile.computed.orders_count >`, types.BoolType, 1, 32, "Syntax error"},
		{"helper argument type", `has_consent(1)`, types.BoolType, 1, 12, "no matching overload for '_has_consent'"},
		{"event_count non-literal name", `event_count(event.name, duration("24h")) > 1`, types.BoolType, 1, 12, eventCountMsg},
		{"event_count non-literal window", `1 < event_count("Order Completed", duration(event.name))`, types.BoolType, 1, 16, eventCountMsg},
		{"event_count window expression", `event_count("Order Completed", now - now) > 1`, types.BoolType, 1, 12, eventCountMsg},
		{"event_count negative window", `event_count("Order Completed", duration("-1h")) > 1`, types.BoolType, 1, 12, eventCountMsg},
		{"event_count inside a macro", `[1, 2].all(x, event_count(event.name, duration("1h")) > x)`, types.BoolType, 1, 26, eventCountMsg},
		{"result not bool", `profile.id`, types.BoolType, 1, 1, "expression gives string, want bool"},
		{"result not double", `profile.computed.orders_count`, types.DoubleType, 1, 1, "expression gives int, want double"},
		{"too expensive", `profile.traits.all(a, profile.traits.all(b, profile.traits.all(c, a + b + c != "")))`, types.BoolType, 1, 1, "expression too expensive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile(tt.expr, tt.want)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile(%q) = %v, want a *CompileError", tt.expr, err)
			}
			if ce.Line != tt.line || ce.Col != tt.col || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("Compile(%q) = %d:%d: %s\nwant %d:%d: …%s…", tt.expr, ce.Line, ce.Col, ce.Msg, tt.line, tt.col, tt.msg)
			}
			if want := fmt.Sprintf("%d:%d: ", ce.Line, ce.Col); !strings.HasPrefix(ce.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", ce.Error(), want)
			}
		})
	}
}

func TestEnvCostBudget(t *testing.T) {
	const expr = `profile.traits.exists(k, k == "zzz")`
	// The estimate of a comprehension over profile.traits assumes 100
	// entries; a small budget refuses it at compile.
	if _, err := newTestEnv(t, EnvOptions{CostBudget: 50}).Compile(expr, types.BoolType); err == nil || !strings.Contains(err.Error(), "budget 50") {
		t.Errorf("Compile with budget 50 = %v, want too expensive", err)
	}

	// The default budget lets it through; the runtime limit stops it on a
	// profile with many traits, and only then.
	env := newTestEnv(t, EnvOptions{RuntimeLimit: 40})
	prg, err := env.Compile(expr, types.BoolType)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	small := &Input{Profile: &ProfileView{Traits: map[string]any{"plan": "pro"}}, Now: now}
	if got, err := prg.Bool(small); err != nil || got {
		t.Errorf("Bool on 1 trait = %v, %v; want false, nil", got, err)
	}
	many := map[string]any{}
	for i := range 80 {
		many[fmt.Sprintf("t%02d", i)] = i
	}
	big := &Input{Profile: &ProfileView{Traits: many}, Now: now}
	got, err := prg.Bool(big)
	if err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("Bool on 80 traits = %v, %v; want the cost limit exceeded", got, err)
	}
	if got {
		t.Error("Bool over the cost limit = true, want false")
	}
}

func TestProgramEventCounts(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	prg, err := env.Compile(`event_count("A", duration("24h")) > 0 || event_count("A", duration("24h")) > 1 || event_count("B", duration("90m")) > 0`, types.BoolType)
	if err != nil {
		t.Fatal(err)
	}
	want := []EventCount{{"A", 24 * time.Hour}, {"B", 90 * time.Minute}}
	if got := prg.EventCounts(); !slices.Equal(got, want) {
		t.Errorf("EventCounts() = %v, want %v", got, want)
	}
	prg, err = env.Compile(`profile.computed.orders_count > 0`, types.BoolType)
	if err != nil {
		t.Fatal(err)
	}
	if got := prg.EventCounts(); len(got) != 0 {
		t.Errorf("EventCounts() without event_count = %v, want none", got)
	}
}

// TestProgramConcurrent evaluates one program from many goroutines, as the
// engine and the journeys do; run with -race.
func TestProgramConcurrent(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	prg, err := env.Compile(`profile.traits.vip == true && event.properties.revenue > 100 && in_audience("vip")`, types.BoolType)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			in := testInput()
			for range 200 {
				if ok, err := prg.Bool(in); err != nil || !ok {
					errs <- fmt.Errorf("Bool = %v, %v", ok, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"30m", 30 * time.Minute, true},
		{" 7d ", 7 * 24 * time.Hour, true},
		{"0d", 0, true},
		{"1.5d", 0, false},
		{"-1d", 0, false},
		{"d", 0, false},
		{"ninety days", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestConjuncts(t *testing.T) {
	env, err := NewEnv([]Field{{Name: "orders_count", Kind: KindInt}}, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		expr string
		want int
	}{
		{`has(event.properties.amount) && event.properties.amount > 10.0 && profile.computed.orders_count > 2`, 3},
		{`(event.name == "a" && profile.computed.orders_count > 1) && now > timestamp("2020-01-01T00:00:00Z")`, 3},
		{`event.name == "a" || profile.computed.orders_count > 1`, 0},
		{`profile.computed.orders_count > 1`, 0},
	} {
		parts := env.Conjuncts(c.expr)
		if len(parts) != c.want {
			var srcs []string
			for _, p := range parts {
				srcs = append(srcs, p.Source)
			}
			t.Errorf("Conjuncts(%q) = %q, want %d parts", c.expr, srcs, c.want)
		}
	}
}

// TestConstantCost: only expressions whose cost grows with the input are
// compiled with runtime cost tracking (it costs every evaluation).
func TestConstantCost(t *testing.T) {
	env := newTestEnv(t, EnvOptions{})
	for _, c := range []struct {
		expr string
		want bool
	}{
		{`profile.computed.orders_count > 2 && !in_audience("vip")`, true},
		{`math.least(0.3, 0.1 * double(profile.computed.orders_count))`, true},
		{`math.greatest(1, 2, profile.computed.orders_count) > 1`, true},
		{`math.least([1, 2, profile.computed.orders_count]) > 0`, true},
		{`profile.traits.exists(k, k == "vip")`, false},
		{`size(event.properties) > 2`, false},
	} {
		checked, iss := env.env.Compile(c.expr)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("compile %q: %v", c.expr, iss.Err())
		}
		if got := constantCost(checked.NativeRep()); got != c.want {
			t.Errorf("constantCost(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
}
