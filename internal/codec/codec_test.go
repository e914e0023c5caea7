package codec

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func decodeJSON(t testing.TB, s string) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// FuzzValue: any JSON value decoded with UseNumber survives the binary
// form unchanged, and a truncated value fails instead of decoding.
func FuzzValue(f *testing.F) {
	for _, s := range []string{`null`, `true`, `"a"`, `1.50`, `{"a":[1,"b",{"c":null}],"d":false}`, `[]`, `{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := decodeJSON(t, s)
		if !ok {
			return
		}
		w := &Writer{}
		if err := w.Value(v); err != nil {
			t.Fatalf("encode %s: %v", s, err)
		}
		r := NewReader(w.B)
		got := r.Value()
		if err := r.Done(); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip of %s: got %#v, want %#v", s, got, v)
		}
		for i := range len(w.B) {
			r := NewReader(w.B[:i])
			r.Value()
			if r.Done() == nil {
				t.Fatalf("%d of %d bytes of %s decoded", i, len(w.B), s)
			}
		}
	})
}

// TestValueLikeJSON: values of other types come back as a JSON round trip
// with UseNumber would give them.
func TestValueLikeJSON(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 5, time.FixedZone("", 3600))
	for _, v := range []any{0.25, int64(-7), 3, at, []string{"a"}, map[string]int{"x": 1}, float32(1.5)} {
		j, _ := json.Marshal(v)
		want, _ := decodeJSON(t, string(j))
		w := &Writer{}
		if err := w.Value(v); err != nil {
			t.Fatal(err)
		}
		r := NewReader(w.B)
		if got := r.Value(); r.Done() != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%T %v: got %#v (%v), want %#v", v, v, got, r.Err(), want)
		}
	}
}

func TestTime(t *testing.T) {
	for _, at := range []time.Time{{}, time.Date(2026, 11, 29, 10, 0, 0, 5, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.FixedZone("", 7200))} {
		w := &Writer{}
		w.Time(at)
		r := NewReader(w.B)
		if got := r.Time(); r.Done() != nil || !got.Equal(at) || got.IsZero() != at.IsZero() {
			t.Errorf("Time(%v) came back %v (%v)", at, got, r.Err())
		}
	}
}

// TestStringIn: strings read as slices of the value's string form are the
// ones written, with no allocation each; a value cut short, or a string
// form of another length, is an error.
func TestStringIn(t *testing.T) {
	w := &Writer{}
	for _, s := range []string{"journey", "", "experiment-ünï"} {
		w.String(s)
	}
	w.Bool(true)
	all := string(w.B)
	var got []string
	allocs := testing.AllocsPerRun(10, func() {
		r := NewReader(w.B)
		got = append(got[:0], r.StringIn(all), r.StringIn(all), r.StringIn(all))
		if !r.Bool() || r.Done() != nil {
			t.Fatalf("read: %v", r.Err())
		}
	})
	if allocs > 1 { // the Reader
		t.Errorf("%v allocations, want none for the strings", allocs)
	}
	if got[0] != "journey" || got[1] != "" || got[2] != "experiment-ünï" {
		t.Errorf("read %q", got)
	}
	for n := range len(w.B) - 1 {
		r := NewReader(w.B[:n])
		for range 3 {
			r.StringIn(all[:n])
		}
		if r.Bool(); r.Err() == nil {
			t.Errorf("cut to %d bytes: no error", n)
		}
	}
	if r := NewReader(w.B); r.StringIn(all[1:]) != "" || r.Err() == nil {
		t.Error("a string form of another length was read")
	}
}
