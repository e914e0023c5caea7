package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/google/cel-go/common/types"

	"cartera/profiles"
)

// Audience is a compiled audience.
type Audience struct {
	Spec *AudienceSpec
	prg  *Program
	hash string
}

// Name is the audience id.
func (a *Audience) Name() string { return a.Spec.Name }

// Ruleset is a compiled, immutable set of computed traits and audiences,
// with the environment every other condition (journeys) compiles in.
type Ruleset struct {
	Env *Env
	// Traits are the declared computed traits; Traits[i].Index == i.
	Traits []*Trait
	// Audiences are evaluated in order, so an audience may use
	// in_audience on one declared before it.
	Audiences []*Audience
	// Sources are the files Load compiled, as it read them (nil for a
	// Ruleset of Compile): what serve shows a reload would change.
	Sources []Source
	// counts are the implicit traits that answer event_count.
	counts     []*Trait
	countIndex map[string]*Trait
	aggregates []*Trait
	// maint is aggregates then counts: what every event updates.
	maint     []*Trait
	byName    map[string]*Trait
	audByName map[string]*Audience
}

// Compile compiles what rule files declare. Errors are FileErrors pointing
// into the files.
func Compile(specs *Specs, opts EnvOptions) (*Ruleset, error) {
	var errs FileErrors
	seen := map[string]bool{}
	var aggs, exprs []*TraitSpec
	for _, t := range specs.Traits {
		if seen[t.Name] {
			errs = append(errs, t.errorf("computed trait %q declared twice", t.Name))
			continue
		}
		seen[t.Name] = true
		if t.Expression.IsZero() {
			aggs = append(aggs, t)
		} else {
			exprs = append(exprs, t)
		}
	}
	seenAud := map[string]bool{}
	for _, a := range specs.Audiences {
		if seenAud[a.Name] {
			errs = append(errs, &FileError{File: a.file.name, Line: a.node.Line, Col: a.node.Column, Msg: fmt.Sprintf("audience %q declared twice", a.Name)})
		}
		seenAud[a.Name] = true
	}

	rs := &Ruleset{countIndex: map[string]*Trait{}, byName: map[string]*Trait{}, audByName: map[string]*Audience{}}
	var fields []Field
	for _, t := range aggs {
		tr := &Trait{Spec: t, Index: len(fields), Kind: kindOf(t), hash: traitHash(t)}
		tr.path, tr.inContext = propertyPath(t.Property)
		fields = append(fields, Field{Name: t.Name, Kind: tr.Kind})
		rs.Traits = append(rs.Traits, tr)
		rs.aggregates = append(rs.aggregates, tr)
	}
	// An expression trait sees the aggregates and the expression traits
	// declared before it, so there can be no cycle.
	for _, t := range exprs {
		env, err := NewEnv(fields, opts)
		if err != nil {
			return nil, err
		}
		prg, err := env.Compile(t.Expression.Source, nil)
		if err != nil {
			errs = append(errs, t.Expression.errorAt(err))
			continue
		}
		tr := &Trait{Spec: t, Index: len(fields), Kind: kindFromType(prg.out), expr: prg, hash: traitHash(t)}
		fields = append(fields, Field{Name: t.Name, Kind: tr.Kind})
		rs.Traits = append(rs.Traits, tr)
	}
	env, err := NewEnv(fields, opts)
	if err != nil {
		return nil, err
	}
	rs.Env = env
	var counts []EventCount
	for _, tr := range rs.Traits {
		rs.byName[tr.Name()] = tr
		if tr.expr != nil {
			counts = append(counts, tr.expr.counts...)
		}
		if tr.Spec.Where.IsZero() {
			continue
		}
		prg, err := env.Compile(tr.Spec.Where.Source, types.BoolType)
		if err != nil {
			errs = append(errs, tr.Spec.Where.errorAt(err))
			continue
		}
		tr.where = prg
		counts = append(counts, prg.counts...)
	}
	for _, a := range specs.Audiences {
		prg, err := env.Compile(a.Expression.Source, types.BoolType)
		if err != nil {
			errs = append(errs, a.Expression.errorAt(err))
			continue
		}
		aud := &Audience{Spec: a, prg: prg, hash: audienceHash(a)}
		rs.Audiences = append(rs.Audiences, aud)
		rs.audByName[a.Name] = aud
		counts = append(counts, prg.counts...)
	}
	// in_audience must name an audience the files declare.
	check := func(prg *Program, x Expr) {
		for _, name := range prg.Audiences() {
			if _, ok := rs.audByName[name]; !ok {
				errs = append(errs, x.errorAt(fmt.Errorf("in_audience: unknown audience %q", name)))
			}
		}
	}
	for _, a := range rs.Audiences {
		check(a.prg, a.Spec.Expression)
	}
	for _, t := range rs.Traits {
		if t.expr != nil {
			check(t.expr, t.Spec.Expression)
		}
		if t.where != nil {
			check(t.where, t.Spec.Where)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	rs.Require(counts...)
	rs.maint = slices.Concat(rs.aggregates, rs.counts)
	return rs, nil
}

func (t *TraitSpec) errorf(format string, args ...any) *FileError {
	return &FileError{File: t.file.name, Line: t.node.Line, Col: t.node.Column, Msg: fmt.Sprintf(format, args...)}
}

func kindFromType(t *types.Type) ValueKind {
	for _, k := range []ValueKind{KindInt, KindDouble, KindString, KindTimestamp, KindBool} {
		if t.IsExactType(k.celType()) {
			return k
		}
	}
	if t.Kind() == types.ListKind {
		return KindList
	}
	return KindDyn
}

func audienceHash(a *AudienceSpec) string {
	h := sha256.Sum256([]byte(a.Name + "\x00" + a.Expression.Source))
	return hex.EncodeToString(h[:8])
}

// Require makes sure the index behind event_count(event, window) is kept,
// for conditions compiled outside the rule files (journeys). Call it before
// the ruleset is handed to the Engine.
func (rs *Ruleset) Require(counts ...EventCount) {
	for _, c := range counts {
		name := countTraitName(c)
		if _, ok := rs.countIndex[name]; ok {
			continue
		}
		spec := &TraitSpec{Name: name, Aggregate: "count", Event: c.Event, Window: c.Window}
		tr := &Trait{Spec: spec, Index: -1, Kind: KindInt, hash: traitHash(spec)}
		rs.counts = append(rs.counts, tr)
		rs.countIndex[name] = tr
	}
	rs.maint = slices.Concat(rs.aggregates, rs.counts)
}

// Trait returns a declared computed trait by name.
func (rs *Ruleset) Trait(name string) (*Trait, bool) {
	t, ok := rs.byName[name]
	return t, ok
}

// Audience returns an audience by name.
func (rs *Ruleset) Audience(name string) (*Audience, bool) {
	a, ok := rs.audByName[name]
	return a, ok
}

// maintained lists every trait kept incrementally: the declared aggregates
// and the implicit event counts.
func (rs *Ruleset) maintained() []*Trait {
	return rs.maint
}

// View builds the profile as conditions see it, at now.
func (rs *Ruleset) view(p *profiles.Profile, ps *profileState, now time.Time) *ProfileView {
	v := &ProfileView{
		ID:         p.ID,
		Traits:     p.TraitValues(),
		Consent:    p.ConsentValues(),
		Identities: identityMap(p),
		CreatedAt:  p.CreatedAt,
		LastSeenAt: p.LastSeenAt,
		Computed:   make([]any, len(rs.Traits)),
		Audiences:  ps.members(),
	}
	v.Counts = func(event string, window time.Duration, at time.Time) int64 {
		t, ok := rs.countIndex[countTraitName(EventCount{Event: event, Window: window})]
		if !ok {
			return 0
		}
		n, _ := t.read(ps.Traits[t.Spec.Name], at).(int64)
		return n
	}
	for _, t := range rs.aggregates {
		v.Computed[t.Index] = t.read(ps.Traits[t.Spec.Name], now)
	}
	in := &Input{Profile: v, Now: now}
	for _, t := range rs.Traits {
		if t.expr == nil {
			continue
		}
		if out, err := t.expr.Eval(in); err == nil {
			v.Computed[t.Index] = out.Value()
		}
	}
	return v
}

func identityMap(p *profiles.Profile) map[string][]string {
	m := make(map[string][]string, len(p.Identities))
	for _, r := range p.Identities {
		m[r.Kind] = append(m[r.Kind], r.Value)
	}
	return m
}

// ViewOf turns a stored event into what conditions see.
func ViewOf(e *profiles.Event) *EventView {
	return &EventView{
		Name: eventName(e), Type: e.Type, Source: e.Source, UserID: e.UserID, AnonymousID: e.AnonymousID,
		MessageID: e.MessageID, Properties: e.Properties, Traits: e.Traits, Context: e.Context, Timestamp: e.Timestamp,
	}
}
