package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cartera/profiles"
)

// Trait is a compiled computed trait.
type Trait struct {
	Spec *TraitSpec
	// Index is the trait's place in profile.computed (-1 for the implicit
	// traits that answer event_count).
	Index int
	Kind  ValueKind
	where *Program
	expr  *Program
	path  []string
	// inContext: path is under event.context (a property written
	// "context.campaign.source"), not event.properties.
	inContext bool
	// hash changes when the definition does; state of another hash is
	// recomputed from the profile's stored events.
	hash string
}

// Name is the trait's name.
func (t *Trait) Name() string { return t.Spec.Name }

// IsExpression reports whether the trait is computed when read.
func (t *Trait) IsExpression() bool { return t.expr != nil }

const (
	defaultDistinctLimit = 20
	maxFrequencies       = 100
	// maxBuckets bounds the time buckets of a windowed trait. Events in the
	// same millisecond share a bucket, so below the bound a window is exact
	// to the millisecond; past it the two oldest buckets merge (keeping the
	// newer time), which can only keep an event in the window slightly
	// longer than its own time would.
	maxBuckets = 2048
)

func kindOf(t *TraitSpec) ValueKind {
	switch t.Aggregate {
	case "count":
		return KindInt
	case "sum", "min", "max":
		return KindDouble
	case "first", "last":
		if t.Property == "" {
			return KindTimestamp
		}
		return KindDyn
	case "distinct":
		return KindList
	case "most_frequent":
		return KindString
	}
	return KindDyn
}

func traitHash(t *TraitSpec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d\x00%s", t.Name, t.Aggregate, t.Event, t.Where.Source, t.Property, t.Window, t.Limit, t.Expression.Source)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// countTraitName names the implicit trait behind event_count(event, window).
func countTraitName(c EventCount) string {
	return fmt.Sprintf("event_count:%s:%s", c.Event, c.Window)
}

// traitState is the incremental state of one trait of one profile.
type traitState struct {
	Hash    string           `json:"h"`
	N       int64            `json:"n,omitempty"`
	Sum     float64          `json:"s,omitempty"`
	Min     *float64         `json:"mn,omitempty"`
	Max     *float64         `json:"mx,omitempty"`
	First   any              `json:"f,omitempty"`
	FirstAt int64            `json:"fa,omitempty"`
	Last    any              `json:"l,omitempty"`
	LastAt  int64            `json:"la,omitempty"`
	Values  []seenValue      `json:"v,omitempty"`
	Freq    map[string]int64 `json:"q,omitempty"`
	Buckets []bucket         `json:"b,omitempty"`
}

type seenValue struct {
	V  string `json:"v"`
	At int64  `json:"t"`
}

// bucket aggregates the events of one millisecond of a windowed trait.
type bucket struct {
	T     int64            `json:"t"`
	N     int64            `json:"n"`
	Sum   float64          `json:"s,omitempty"`
	Min   float64          `json:"mn,omitempty"`
	Max   float64          `json:"mx,omitempty"`
	First any              `json:"f,omitempty"`
	Last  any              `json:"l,omitempty"`
	Freq  map[string]int64 `json:"q,omitempty"`
}

// matches reports whether an event counts for the trait.
func (t *Trait) matches(e *profiles.Event, in *Input) (bool, error) {
	if t.Spec.Event != "" && eventName(e) != t.Spec.Event {
		return false, nil
	}
	if t.where == nil {
		return true, nil
	}
	return t.where.Bool(in)
}

// eventName is the name conditions see: the track event, or the page or
// screen name.
func eventName(e *profiles.Event) string {
	if e.Type == profiles.TypeTrack {
		return e.Event
	}
	return e.Name
}

// value extracts the trait's property from an event; without a property it
// is the event's timestamp.
func (t *Trait) value(e *profiles.Event) (any, bool) {
	if len(t.path) == 0 {
		return e.Timestamp.UTC(), true
	}
	var cur any = e.Properties
	if t.inContext {
		cur = e.Context
	}
	for _, seg := range t.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

func text(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// add folds one matching event into the state.
func (t *Trait) add(st *traitState, e *profiles.Event) {
	v, ok := t.value(e)
	if !ok && t.Spec.Aggregate != "count" {
		return
	}
	if needsNumber(t.Spec.Aggregate) {
		if _, isNum := number(v); !isNum {
			return
		}
	}
	at := e.Timestamp.UnixMilli()
	if t.Spec.Window > 0 {
		t.addBucket(st, v, at)
		return
	}
	switch t.Spec.Aggregate {
	case "count":
		st.N++
	case "sum":
		if f, ok := number(v); ok {
			st.Sum += f
			st.N++
		}
	case "min":
		if f, ok := number(v); ok && (st.Min == nil || f < *st.Min) {
			st.Min = &f
		}
	case "max":
		if f, ok := number(v); ok && (st.Max == nil || f > *st.Max) {
			st.Max = &f
		}
	case "first":
		if st.N == 0 || at < st.FirstAt {
			st.First, st.FirstAt = storable(v), at
		}
		st.N++
	case "last":
		if st.N == 0 || at >= st.LastAt {
			st.Last, st.LastAt = storable(v), at
		}
		st.N++
	case "distinct":
		if s, ok := text(v); ok {
			st.Values = addSeen(st.Values, s, at, t.limit())
		}
	case "most_frequent":
		if s, ok := text(v); ok {
			st.Freq = addFreq(st.Freq, s, 1)
		}
	}
}

func needsNumber(agg string) bool {
	return agg == "sum" || agg == "min" || agg == "max"
}

func (t *Trait) limit() int {
	if t.Spec.Limit > 0 {
		return t.Spec.Limit
	}
	return defaultDistinctLimit
}

// storable keeps timestamps as RFC 3339 text in state (they come back as
// time.Time through the trait's kind).
func storable(v any) any {
	if ts, ok := v.(time.Time); ok {
		return ts.Format(time.RFC3339Nano)
	}
	return v
}

func addSeen(vals []seenValue, s string, at int64, limit int) []seenValue {
	if i := slices.IndexFunc(vals, func(sv seenValue) bool { return sv.V == s }); i >= 0 {
		if at > vals[i].At {
			vals[i].At = at
		}
	} else {
		vals = append(vals, seenValue{V: s, At: at})
	}
	if len(vals) > limit {
		// Drop the value seen least recently (of one millisecond, the
		// smaller: a window bucket does not keep the order within it).
		oldest := 0
		for i, sv := range vals {
			if sv.At < vals[oldest].At || (sv.At == vals[oldest].At && sv.V < vals[oldest].V) {
				oldest = i
			}
		}
		vals = slices.Delete(vals, oldest, oldest+1)
	}
	return vals
}

func addFreq(f map[string]int64, s string, n int64) map[string]int64 {
	if f == nil {
		f = map[string]int64{}
	}
	f[s] += n
	if len(f) > maxFrequencies {
		least, leastN := "", int64(-1)
		for k, c := range f {
			if k != s && (leastN < 0 || c < leastN || (c == leastN && k > least)) {
				least, leastN = k, c
			}
		}
		delete(f, least)
	}
	return f
}

func (t *Trait) addBucket(st *traitState, v any, at int64) {
	i, found := slices.BinarySearchFunc(st.Buckets, at, func(b bucket, t int64) int { return cmpInt(b.T, t) })
	if !found {
		st.Buckets = slices.Insert(st.Buckets, i, bucket{T: at})
	}
	b := &st.Buckets[i]
	first := b.N == 0
	b.N++
	if f, ok := number(v); ok {
		b.Sum += f
		if first || f < b.Min {
			b.Min = f
		}
		if first || f > b.Max {
			b.Max = f
		}
	}
	if first {
		b.First = storable(v)
	}
	b.Last = storable(v)
	if t.Spec.Aggregate == "distinct" || t.Spec.Aggregate == "most_frequent" {
		if s, ok := text(v); ok {
			b.Freq = addFreq(b.Freq, s, 1)
		}
	}
	if len(st.Buckets) > maxBuckets {
		merged := mergeBuckets(st.Buckets[0], st.Buckets[1])
		st.Buckets = append(st.Buckets[:1], st.Buckets[2:]...)
		st.Buckets[0] = merged
	}
}

func mergeBuckets(older, newer bucket) bucket {
	out := newer
	out.N = older.N + newer.N
	out.Sum = older.Sum + newer.Sum
	out.Min = min(older.Min, newer.Min)
	out.Max = max(older.Max, newer.Max)
	out.First = older.First
	for k, n := range older.Freq {
		out.Freq = addFreq(out.Freq, k, n)
	}
	return out
}

// prune drops buckets that no read at or after now can see.
func (t *Trait) prune(st *traitState, now time.Time) {
	if t.Spec.Window <= 0 {
		return
	}
	cut := now.Add(-t.Spec.Window).UnixMilli()
	i := 0
	for i < len(st.Buckets) && st.Buckets[i].T <= cut {
		i++
	}
	if i > 0 {
		st.Buckets = slices.Delete(st.Buckets, 0, i)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// read gives the trait's value at now (windowed traits count the events
// with now-window < timestamp <= now), or nil when there is none.
func (t *Trait) read(st *traitState, now time.Time) any {
	if st == nil {
		return nil
	}
	if t.Spec.Window > 0 {
		return t.readWindow(st, now)
	}
	switch t.Spec.Aggregate {
	case "count":
		return st.N
	case "sum":
		return st.Sum
	case "min":
		if st.Min == nil {
			return nil
		}
		return *st.Min
	case "max":
		if st.Max == nil {
			return nil
		}
		return *st.Max
	case "first":
		return t.restore(st.First, st.N > 0)
	case "last":
		return t.restore(st.Last, st.N > 0)
	case "distinct":
		return distinctList(st.Values)
	case "most_frequent":
		return mostFrequent(st.Freq)
	}
	return nil
}

func (t *Trait) readWindow(st *traitState, now time.Time) any {
	lo, hi := now.Add(-t.Spec.Window).UnixMilli(), now.UnixMilli()
	var (
		n        int64
		sum      float64
		mn, mx   float64
		first    any
		last     any
		freq     map[string]int64
		lastSeen []seenValue
	)
	for _, b := range st.Buckets {
		if b.T <= lo || b.T > hi {
			continue
		}
		if n == 0 {
			mn, mx, first = b.Min, b.Max, b.First
		}
		n += b.N
		sum += b.Sum
		mn, mx = min(mn, b.Min), max(mx, b.Max)
		last = b.Last
		for k, c := range b.Freq {
			if freq == nil {
				freq = map[string]int64{}
			}
			freq[k] += c
			lastSeen = addSeen(lastSeen, k, b.T, t.limit())
		}
	}
	switch t.Spec.Aggregate {
	case "count":
		return n
	case "sum":
		return sum
	case "min":
		if n == 0 {
			return nil
		}
		return mn
	case "max":
		if n == 0 {
			return nil
		}
		return mx
	case "first":
		return t.restore(first, n > 0)
	case "last":
		return t.restore(last, n > 0)
	case "distinct":
		return distinctList(lastSeen)
	case "most_frequent":
		return mostFrequent(freq)
	}
	return nil
}

func (t *Trait) restore(v any, ok bool) any {
	if !ok {
		return nil
	}
	if t.Kind == KindTimestamp {
		if s, isStr := v.(string); isStr {
			if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return ts
			}
		}
		return nil
	}
	return v
}

func distinctList(vals []seenValue) []any {
	sorted := slices.Clone(vals)
	slices.SortFunc(sorted, func(a, b seenValue) int {
		if c := cmpInt(a.At, b.At); c != 0 {
			return c
		}
		return strings.Compare(a.V, b.V)
	})
	out := make([]any, len(sorted))
	for i, v := range sorted {
		out[i] = v.V
	}
	return out
}

// mostFrequent picks the value seen most often; ties go to the smaller
// value, so the answer does not depend on map order.
func mostFrequent(f map[string]int64) any {
	if len(f) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(f))
	best := keys[0]
	for _, k := range keys[1:] {
		if f[k] > f[best] {
			best = k
		}
	}
	return best
}

// propertyPath splits a trait's property into the path under
// event.properties or, for "context.<path>", under event.context (where
// browser SDKs put the page, campaign, locale and user agent).
func propertyPath(p string) (path []string, inContext bool) {
	if rest, ok := strings.CutPrefix(p, "context."); ok && rest != "" {
		return splitPath(rest), true
	}
	return splitPath(p), false
}

// splitPath turns "product.category" into its segments.
func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, ".")
}
