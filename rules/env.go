package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
	"github.com/google/cel-go/parser"
)

// CEL type names of the declared objects.
const (
	typeProfile  = "cartera.Profile"
	typeEvent    = "cartera.Event"
	typeComputed = "cartera.Computed"
)

// Budgets for marketer-written expressions. The static budget is checked
// once, at load, with CEL's cost estimator; the runtime limit stops an
// evaluation that goes past it (a condition is a check, not a program).
const (
	DefaultCostBudget   = 20_000
	DefaultRuntimeLimit = 100_000
)

// Kinds of the values computed traits produce, and their CEL types.
type ValueKind int

// Value kinds.
const (
	KindInt ValueKind = iota
	KindDouble
	KindString
	KindTimestamp
	KindList
	KindDyn
	KindBool
)

func (k ValueKind) celType() *types.Type {
	switch k {
	case KindInt:
		return types.IntType
	case KindDouble:
		return types.DoubleType
	case KindString:
		return types.StringType
	case KindTimestamp:
		return types.TimestampType
	case KindList:
		return types.NewListType(types.DynType)
	case KindBool:
		return types.BoolType
	default:
		return types.DynType
	}
}

func (k ValueKind) String() string { return k.celType().String() }

// Field is one declared computed trait as conditions see it.
type Field struct {
	Name string
	Kind ValueKind
}

// Env is the one CEL environment of Cartera: every condition of journeys,
// computed traits and audiences is compiled here, against declared types.
type Env struct {
	env      *cel.Env
	fields   []Field
	fieldIdx map[string]int
	budget   uint64
	limit    uint64
}

// EnvOptions tune an Env.
type EnvOptions struct {
	// CostBudget is the largest estimated cost an expression may have.
	CostBudget uint64
	// RuntimeLimit stops an evaluation past this actual cost.
	RuntimeLimit uint64
}

// NewEnv builds the environment; computed declares the computed traits that
// profile.computed holds, with their types, so that a comparison of a count
// with a string is a type error at load, not a surprise at run time.
func NewEnv(computed []Field, opts EnvOptions) (*Env, error) {
	e := &Env{fields: computed, fieldIdx: map[string]int{}, budget: opts.CostBudget, limit: opts.RuntimeLimit}
	if e.budget == 0 {
		e.budget = DefaultCostBudget
	}
	if e.limit == 0 {
		e.limit = DefaultRuntimeLimit
	}
	for i, f := range computed {
		e.fieldIdx[f.Name] = i
	}
	base, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	p := &provider{Registry: base, structs: map[string]map[string]*types.FieldType{}}
	p.structs[typeProfile] = profileFields()
	p.structs[typeEvent] = eventFields()
	p.structs[typeComputed] = computedFields(computed)
	a := &adapter{base: base}

	env, err := cel.NewEnv(
		cel.CustomTypeProvider(p),
		cel.CustomTypeAdapter(a),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		ext.Math(),
		ext.Strings(),
		cel.Variable("profile", types.NewObjectType(typeProfile)),
		cel.Variable("event", types.NewObjectType(typeEvent)),
		cel.Variable("trigger", types.NewObjectType(typeEvent)),
		cel.Variable("now", types.TimestampType),
		cel.Macros(
			cel.GlobalMacro("has_consent", 1, implicitArgs("_has_consent", "profile", "")),
			cel.GlobalMacro("in_audience", 1, implicitArgs("_in_audience", "profile", "")),
			cel.GlobalMacro("days_since", 1, implicitArgs("_days_since", "", "now")),
			cel.GlobalMacro("event_count", 2, implicitArgs("_event_count", "profile", "", "", "now")),
		),
		cel.Function("_has_consent",
			cel.Overload("has_consent_profile_string", []*types.Type{types.NewObjectType(typeProfile), types.StringType}, types.BoolType,
				cel.BinaryBinding(hasConsent))),
		cel.Function("_in_audience",
			cel.Overload("in_audience_profile_string", []*types.Type{types.NewObjectType(typeProfile), types.StringType}, types.BoolType,
				cel.BinaryBinding(inAudience))),
		cel.Function("_days_since",
			cel.Overload("days_since_timestamp_timestamp", []*types.Type{types.TimestampType, types.TimestampType}, types.IntType,
				cel.BinaryBinding(daysSince))),
		cel.Function("_event_count",
			cel.Overload("event_count_profile_string_duration_timestamp",
				[]*types.Type{types.NewObjectType(typeProfile), types.StringType, types.DurationType, types.TimestampType}, types.IntType,
				cel.FunctionBinding(eventCount))),
	)
	if err != nil {
		return nil, fmt.Errorf("make CEL environment: %w", err)
	}
	e.env = env
	return e, nil
}

// implicitArgs is a macro that rewrites f(a, b) into fn(x, a, b, y): the
// names given are the implicit variables (profile, now) in their places, ""
// stands for the next explicit argument. It lets marketers write
// has_consent("email") while the function stays pure.
func implicitArgs(fn string, layout ...string) cel.MacroFactory {
	return func(eh cel.MacroExprFactory, target ast.Expr, args []ast.Expr) (ast.Expr, *cel.Error) {
		out := make([]ast.Expr, 0, len(layout))
		next := 0
		for _, name := range layout {
			if name == "" {
				out = append(out, args[next])
				next++
				continue
			}
			out = append(out, eh.NewIdent(name))
		}
		return eh.NewCall(fn, out...), nil
	}
}

// Program is a compiled, cost-checked condition, safe for concurrent use.
type Program struct {
	Source string
	prg    cel.Program
	out    *types.Type
	// counts are the (event, window) pairs event_count asks about; the
	// engine keeps them as implicit windowed traits.
	counts []EventCount
	// audiences are the literal names in_audience asks about.
	audiences []string
}

// Audiences lists the audiences the program's in_audience calls name.
func (p *Program) Audiences() []string { return p.audiences }

func audienceNames(a *ast.AST) []string {
	var out []string
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "_in_audience" {
			return
		}
		if name, ok := literalString(e.AsCall().Args()[1]); ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}))
	return out
}

// EventCount is one event_count(name, window) that a program uses.
type EventCount struct {
	Event  string
	Window time.Duration
}

// CompileError is a compile error with its position inside the expression
// (1-based line and column), so rule files can point into the file.
type CompileError struct {
	Line, Col int
	Msg       string
}

func (e *CompileError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// Compile parses, type-checks and cost-checks an expression. want is the
// type the result must have (nil: any).
func (e *Env) Compile(expr string, want *types.Type) (*Program, error) {
	checked, iss := e.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		errs := iss.Errors()
		if len(errs) > 0 {
			first := errs[0]
			loc := first.Location
			line, col := 1, 1
			if loc != nil {
				line, col = loc.Line(), loc.Column()+1
			}
			return nil, &CompileError{Line: line, Col: col, Msg: first.Message}
		}
		return nil, &CompileError{Line: 1, Col: 1, Msg: iss.Err().Error()}
	}
	out := checked.OutputType()
	if want != nil && !out.IsExactType(want) && !out.IsExactType(types.DynType) {
		return nil, &CompileError{Line: 1, Col: 1, Msg: fmt.Sprintf("expression gives %s, want %s", out, want)}
	}
	counts, err := eventCounts(checked.NativeRep())
	if err != nil {
		return nil, err
	}
	est, err := e.env.EstimateCost(checked, costEstimator{})
	if err != nil {
		return nil, &CompileError{Line: 1, Col: 1, Msg: "estimate cost: " + err.Error()}
	}
	if est.Max > e.budget {
		return nil, &CompileError{Line: 1, Col: 1, Msg: fmt.Sprintf("expression too expensive: estimated cost up to %d, budget %d", est.Max, e.budget)}
	}
	// Only expressions whose cost grows with the input (loops, string
	// scans) pay for runtime cost tracking; the others cost what the
	// estimate says, whatever the profile.
	popts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if !constantCost(checked.NativeRep()) {
		popts = append(popts, cel.CostLimit(e.limit))
	}
	prg, err := e.env.Program(checked, popts...)
	if err != nil {
		return nil, &CompileError{Line: 1, Col: 1, Msg: err.Error()}
	}
	return &Program{Source: expr, prg: prg, out: out, counts: counts, audiences: audienceNames(checked.NativeRep())}, nil
}

// eventCounts collects the literal arguments of every event_count call;
// event_count is answered from a maintained index, so its arguments must
// be known at load.
func eventCounts(a *ast.AST) ([]EventCount, error) {
	var out []EventCount
	var bad *CompileError
	info := a.SourceInfo()
	visit := func(e ast.Expr) {
		if bad != nil || e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "_event_count" {
			return
		}
		args := e.AsCall().Args()
		name, nameOK := literalString(args[1])
		window, winOK := literalDuration(args[2])
		if !nameOK || !winOK || window <= 0 {
			loc := info.GetStartLocation(e.ID())
			bad = &CompileError{Line: max(loc.Line(), 1), Col: loc.Column() + 1,
				Msg: `event_count needs a literal event name and a positive literal duration, e.g. event_count("Order Completed", duration("24h"))`}
			return
		}
		ec := EventCount{Event: name, Window: window}
		if !slices.Contains(out, ec) {
			out = append(out, ec)
		}
	}
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(visit))
	if bad != nil {
		return nil, bad
	}
	return out, nil
}

func literalString(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

func literalDuration(e ast.Expr) (time.Duration, bool) {
	if e.Kind() != ast.CallKind {
		return 0, false
	}
	c := e.AsCall()
	if c.FunctionName() != "duration" || len(c.Args()) != 1 {
		return 0, false
	}
	s, ok := literalString(c.Args()[0])
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// constantCost reports whether an expression's cost is independent of its
// input: no comprehension and only calls from a fixed set of cheap ones.
func constantCost(a *ast.AST) bool {
	ok := true
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.ComprehensionKind:
			ok = false
		case ast.CallKind:
			if !isCheapCall(e.AsCall()) {
				ok = false
			}
		}
	}))
	return ok
}

// isCheapCall reports whether a function costs the same whatever its
// arguments hold (string + is linear, but strings are bounded by the event
// size limit).
func isCheapCall(call ast.CallExpr) bool {
	switch call.FunctionName() {
	case "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "_&&_", "_||_", "!_", "_?_:_", "-_",
		"_+_", "_-_", "_*_", "_/_", "_%_", "_[_]", "@in",
		"int", "double", "uint", "bool", "duration", "timestamp",
		"_has_consent", "_in_audience", "_days_since", "_event_count":
		return true
	case "math.@min", "math.@max":
		// math.least(a, b, ...) and math.greatest: as many steps as the
		// expression has arguments (from three on, given as a list
		// literal); given a list from the input, as long as that list.
		args := call.Args()
		return len(args) > 1 || (len(args) == 1 && args[0].Kind() == ast.ListKind)
	}
	return false
}

// EventCounts lists the event_count(name, window) pairs the program uses.
func (p *Program) EventCounts() []EventCount { return p.counts }

// Eval runs the program against an input.
func (p *Program) Eval(in *Input) (ref.Val, error) {
	out, _, err := p.prg.Eval(in)
	if err != nil {
		return nil, fmt.Errorf("evaluate %q: %w", p.Source, err)
	}
	return out, nil
}

// Bool runs a boolean program; an error counts as false and is returned.
func (p *Program) Bool(in *Input) (bool, error) {
	out, err := p.Eval(in)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluate %q: got %s, want bool", p.Source, out.Type())
	}
	return bool(b), nil
}

// Input is what one evaluation sees. It is an interpreter activation
// itself, so evaluating allocates no map. Inputs are reused: Reset them.
type Input struct {
	Profile *ProfileView
	Event   *EventView
	Trigger *EventView
	Now     time.Time
}

// ResolveName implements interpreter.Activation.
func (in *Input) ResolveName(name string) (any, bool) {
	switch name {
	case "profile":
		if in.Profile == nil {
			return nil, false
		}
		return profileVal{in.Profile}, true
	case "event":
		if in.Event == nil {
			return nil, false
		}
		return in.Event, true
	case "trigger":
		if in.Trigger == nil {
			return nil, false
		}
		return in.Trigger, true
	case "now":
		return types.Timestamp{Time: in.Now}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *Input) Parent() interpreter.Activation { return nil }

// ProfileView is the profile as conditions see it.
type ProfileView struct {
	ID         string
	Traits     map[string]any
	Consent    map[string]bool
	Identities map[string][]string
	Audiences  []string
	CreatedAt  time.Time
	LastSeenAt time.Time
	// Computed holds the values of the declared computed traits, by the
	// index of their Field; nil entries read as the kind's zero value.
	Computed []any
	// Counts answers event_count; nil reads as zero.
	Counts func(event string, window time.Duration, now time.Time) int64
}

// EventView is an event as conditions see it.
type EventView struct {
	Name        string
	Type        string
	Source      string
	UserID      string
	AnonymousID string
	MessageID   string
	Properties  map[string]any
	Traits      map[string]any
	Context     map[string]any
	Timestamp   time.Time
}

func field(t *types.Type, get func(any) any) *types.FieldType {
	return &types.FieldType{
		Type:    t,
		IsSet:   func(target any) bool { return get(target) != nil },
		GetFrom: func(target any) (any, error) { return get(target), nil },
	}
}

func profileFields() map[string]*types.FieldType {
	pv := func(t any) *ProfileView { v, _ := t.(*ProfileView); return v }
	return map[string]*types.FieldType{
		"id":           field(types.StringType, func(t any) any { return pv(t).ID }),
		"traits":       field(types.NewMapType(types.StringType, types.DynType), func(t any) any { return orEmpty(pv(t).Traits) }),
		"consent":      field(types.NewMapType(types.StringType, types.BoolType), func(t any) any { return orEmptyBool(pv(t).Consent) }),
		"identities":   field(types.NewMapType(types.StringType, types.NewListType(types.StringType)), func(t any) any { return orEmptyIDs(pv(t).Identities) }),
		"audiences":    field(types.NewListType(types.StringType), func(t any) any { return orEmptyList(pv(t).Audiences) }),
		"created_at":   field(types.TimestampType, func(t any) any { return pv(t).CreatedAt }),
		"last_seen_at": field(types.TimestampType, func(t any) any { return pv(t).LastSeenAt }),
		"computed":     field(types.NewObjectType(typeComputed), func(t any) any { return computedVal{pv(t)} }),
	}
}

func eventFields() map[string]*types.FieldType {
	ev := func(t any) *EventView { v, _ := t.(*EventView); return v }
	return map[string]*types.FieldType{
		"name":         field(types.StringType, func(t any) any { return ev(t).Name }),
		"type":         field(types.StringType, func(t any) any { return ev(t).Type }),
		"source":       field(types.StringType, func(t any) any { return ev(t).Source }),
		"user_id":      field(types.StringType, func(t any) any { return ev(t).UserID }),
		"anonymous_id": field(types.StringType, func(t any) any { return ev(t).AnonymousID }),
		"message_id":   field(types.StringType, func(t any) any { return ev(t).MessageID }),
		"properties":   field(types.NewMapType(types.StringType, types.DynType), func(t any) any { return orEmpty(ev(t).Properties) }),
		"traits":       field(types.NewMapType(types.StringType, types.DynType), func(t any) any { return orEmpty(ev(t).Traits) }),
		"context":      field(types.NewMapType(types.StringType, types.DynType), func(t any) any { return orEmpty(ev(t).Context) }),
		"timestamp":    field(types.TimestampType, func(t any) any { return ev(t).Timestamp }),
	}
}

// computedVal carries the profile to the fields of profile.computed.
type computedVal struct{ p *ProfileView }

func computedFields(fields []Field) map[string]*types.FieldType {
	out := make(map[string]*types.FieldType, len(fields))
	for i, f := range fields {
		zero := zeroOf(f.Kind)
		get := func(t any) any {
			c, _ := t.(computedVal)
			if c.p == nil || i >= len(c.p.Computed) || c.p.Computed[i] == nil {
				return nil
			}
			return c.p.Computed[i]
		}
		out[f.Name] = &types.FieldType{
			Type:  f.Kind.celType(),
			IsSet: func(t any) bool { return get(t) != nil },
			GetFrom: func(t any) (any, error) {
				if v := get(t); v != nil {
					return v, nil
				}
				return zero, nil
			},
		}
	}
	return out
}

func zeroOf(k ValueKind) any {
	switch k {
	case KindInt:
		return int64(0)
	case KindDouble:
		return float64(0)
	case KindString:
		return ""
	case KindTimestamp:
		return time.Time{}
	case KindList:
		return []any{}
	case KindBool:
		return false
	default:
		return types.NullValue
	}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orEmptyBool(m map[string]bool) map[string]bool {
	if m == nil {
		return map[string]bool{}
	}
	return m
}

func orEmptyIDs(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return m
}

func orEmptyList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// provider declares Cartera's object types on top of CEL's registry.
type provider struct {
	*types.Registry
	structs map[string]map[string]*types.FieldType
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := p.structs[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if fs, ok := p.structs[name]; ok {
		names := make([]string, 0, len(fs))
		for n := range fs {
			names = append(names, n)
		}
		slices.Sort(names)
		return names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if fs, ok := p.structs[name]; ok {
		f, ok := fs[fieldName]
		return f, ok
	}
	return p.Registry.FindStructFieldType(name, fieldName)
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.structs[name]; ok {
		return types.NewErr("%s cannot be constructed in an expression", name)
	}
	return p.Registry.NewValue(name, fields)
}

// adapter turns Go values of profiles and events into CEL values: JSON
// numbers become int or double, nested maps and lists stay lazy.
type adapter struct{ base types.Adapter }

func (a *adapter) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return types.Int(i)
		}
		if f, err := x.Float64(); err == nil {
			return types.Double(f)
		}
		return types.String(x.String())
	case map[string]any:
		return types.NewStringInterfaceMap(a, x)
	case []any:
		return types.NewDynamicList(a, x)
	case *EventView:
		return eventVal{x}
	case *ProfileView:
		return profileVal{x}
	case computedVal:
		return x
	case time.Time:
		return types.Timestamp{Time: x}
	case nil:
		return types.NullValue
	}
	return a.base.NativeToValue(v)
}

// objectVal is the shared behaviour of Cartera's opaque CEL objects.
type objectVal struct{ typeName string }

func (o objectVal) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted", o.typeName)
}
func (o objectVal) ConvertToType(t ref.Type) ref.Val {
	return types.NewErr("%s cannot be converted to %s", o.typeName, t.TypeName())
}

type profileVal struct{ p *ProfileView }

func (v profileVal) ConvertToNative(t reflect.Type) (any, error) {
	return objectVal{typeProfile}.ConvertToNative(t)
}
func (v profileVal) ConvertToType(t ref.Type) ref.Val { return objectVal{typeProfile}.ConvertToType(t) }
func (v profileVal) Equal(o ref.Val) ref.Val {
	w, ok := o.(profileVal)
	return types.Bool(ok && w.p.ID == v.p.ID)
}
func (v profileVal) Type() ref.Type { return types.NewObjectType(typeProfile) }
func (v profileVal) Value() any     { return v.p }

type eventVal struct{ e *EventView }

func (v eventVal) ConvertToNative(t reflect.Type) (any, error) {
	return objectVal{typeEvent}.ConvertToNative(t)
}
func (v eventVal) ConvertToType(t ref.Type) ref.Val { return objectVal{typeEvent}.ConvertToType(t) }
func (v eventVal) Equal(o ref.Val) ref.Val {
	w, ok := o.(eventVal)
	return types.Bool(ok && w.e == v.e)
}
func (v eventVal) Type() ref.Type { return types.NewObjectType(typeEvent) }
func (v eventVal) Value() any     { return v.e }

func (v computedVal) ConvertToNative(t reflect.Type) (any, error) {
	return objectVal{typeComputed}.ConvertToNative(t)
}
func (v computedVal) ConvertToType(t ref.Type) ref.Val {
	return objectVal{typeComputed}.ConvertToType(t)
}
func (v computedVal) Equal(o ref.Val) ref.Val { return types.Bool(false) }
func (v computedVal) Type() ref.Type          { return types.NewObjectType(typeComputed) }
func (v computedVal) Value() any              { return v }

func hasConsent(p, purpose ref.Val) ref.Val {
	pv, ok := p.Value().(*ProfileView)
	if !ok {
		return types.NewErr("has_consent: no profile")
	}
	return types.Bool(pv.Consent[string(purpose.(types.String))])
}

func inAudience(p, id ref.Val) ref.Val {
	pv, ok := p.Value().(*ProfileView)
	if !ok {
		return types.NewErr("in_audience: no profile")
	}
	return types.Bool(slices.Contains(pv.Audiences, string(id.(types.String))))
}

func daysSince(t, now ref.Val) ref.Val {
	ts, ok1 := t.(types.Timestamp)
	n, ok2 := now.(types.Timestamp)
	if !ok1 || !ok2 {
		return types.NewErr("days_since: want timestamps")
	}
	if ts.Time.IsZero() {
		return types.Int(math.MaxInt32)
	}
	return types.Int(int64(n.Time.Sub(ts.Time) / (24 * time.Hour)))
}

func eventCount(args ...ref.Val) ref.Val {
	pv, ok := args[0].Value().(*ProfileView)
	if !ok {
		return types.NewErr("event_count: no profile")
	}
	if pv.Counts == nil {
		return types.Int(0)
	}
	name := string(args[1].(types.String))
	window := args[2].(types.Duration).Duration
	now := args[3].(types.Timestamp).Time
	return types.Int(pv.Counts(name, window, now))
}

// costEstimator gives sizes for the declared maps and lists, so the
// estimate of a comprehension over them is finite.
type costEstimator struct{}

func (costEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if path := n.Path(); len(path) > 0 {
		switch path[0] {
		case "profile", "event", "trigger":
			return &checker.SizeEstimate{Min: 0, Max: 100}
		}
	}
	return nil
}

func (costEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Conjuncts splits a boolean condition into the parts of its top-level
// && chain, each compiled on its own, in order: a caller that evaluates
// the same parts for many conditions (journey triggers on one event) can
// evaluate each distinct part once. It returns nil when the condition is
// not such a chain or a part does not compile alone.
func (e *Env) Conjuncts(expr string) []*Program {
	parsed, iss := e.env.Parse(expr)
	if iss != nil && iss.Err() != nil {
		return nil
	}
	native := parsed.NativeRep()
	var parts []ast.Expr
	var flatten func(x ast.Expr)
	flatten = func(x ast.Expr) {
		if x.Kind() == ast.CallKind && x.AsCall().FunctionName() == operators.LogicalAnd {
			for _, a := range x.AsCall().Args() {
				flatten(a)
			}
			return
		}
		parts = append(parts, x)
	}
	flatten(native.Expr())
	if len(parts) < 2 {
		return nil
	}
	out := make([]*Program, 0, len(parts))
	for _, x := range parts {
		src, err := parser.Unparse(x, native.SourceInfo())
		if err != nil {
			return nil
		}
		prg, err := e.Compile(src, types.BoolType)
		if err != nil {
			return nil
		}
		out = append(out, prg)
	}
	return out
}
