package rules

import (
	"bytes"
	"encoding/json"

	"cartera/internal/codec"
)

// encodeState is the stored form of a profile's rules state: codec.Format1,
// then the fields in order. States written as JSON by earlier versions
// still decode (decodeState tells them apart by the first byte).
func encodeState(ps *profileState, buf []byte) ([]byte, error) {
	w := &codec.Writer{B: append(buf[:0], codec.Format1)}
	w.Len(len(ps.Traits), ps.Traits == nil)
	for name, st := range ps.Traits {
		w.String(name)
		if st == nil {
			w.Bool(false)
			continue
		}
		w.Bool(true)
		if err := encodeTraitState(w, st); err != nil {
			return nil, err
		}
	}
	w.Len(len(ps.Audiences), ps.Audiences == nil)
	for name, m := range ps.Audiences {
		w.String(name)
		if m == nil {
			w.Bool(false)
			continue
		}
		w.Bool(true)
		w.Bool(m.Member)
		w.Time(m.EnteredAt)
		w.Time(m.ExitedAt)
	}
	return w.B, nil
}

func optFloat(w *codec.Writer, f *float64) {
	w.Bool(f != nil)
	if f != nil {
		w.Float(*f)
	}
}

func readOptFloat(r *codec.Reader) *float64 {
	if !r.Bool() {
		return nil
	}
	f := r.Float()
	return &f
}

func encodeFreq(w *codec.Writer, m map[string]int64) {
	w.Len(len(m), m == nil)
	for k, n := range m {
		w.String(k)
		w.Varint(n)
	}
}

func readFreq(r *codec.Reader) map[string]int64 {
	n, isNil := r.Len()
	if isNil {
		return nil
	}
	m := make(map[string]int64, n)
	for range n {
		k := r.String()
		m[k] = r.Varint()
	}
	return m
}

func encodeTraitState(w *codec.Writer, st *traitState) error {
	w.String(st.Hash)
	w.Varint(st.N)
	w.Float(st.Sum)
	optFloat(w, st.Min)
	optFloat(w, st.Max)
	if err := w.Value(st.First); err != nil {
		return err
	}
	w.Varint(st.FirstAt)
	if err := w.Value(st.Last); err != nil {
		return err
	}
	w.Varint(st.LastAt)
	w.Len(len(st.Values), st.Values == nil)
	for _, v := range st.Values {
		w.String(v.V)
		w.Varint(v.At)
	}
	encodeFreq(w, st.Freq)
	w.Len(len(st.Buckets), st.Buckets == nil)
	for _, b := range st.Buckets {
		w.Varint(b.T)
		w.Varint(b.N)
		w.Float(b.Sum)
		w.Float(b.Min)
		w.Float(b.Max)
		if err := w.Value(b.First); err != nil {
			return err
		}
		if err := w.Value(b.Last); err != nil {
			return err
		}
		encodeFreq(w, b.Freq)
	}
	return nil
}

func decodeTraitState(r *codec.Reader) *traitState {
	st := &traitState{Hash: r.String(), N: r.Varint(), Sum: r.Float(), Min: readOptFloat(r), Max: readOptFloat(r)}
	st.First, st.FirstAt = r.Value(), r.Varint()
	st.Last, st.LastAt = r.Value(), r.Varint()
	if n, isNil := r.Len(); !isNil {
		st.Values = make([]seenValue, n)
		for i := range st.Values {
			st.Values[i] = seenValue{V: r.String(), At: r.Varint()}
		}
	}
	st.Freq = readFreq(r)
	if n, isNil := r.Len(); !isNil {
		st.Buckets = make([]bucket, n)
		for i := range st.Buckets {
			b := bucket{T: r.Varint(), N: r.Varint(), Sum: r.Float(), Min: r.Float(), Max: r.Float()}
			b.First, b.Last = r.Value(), r.Value()
			b.Freq = readFreq(r)
			st.Buckets[i] = b
		}
	}
	return st
}

// decodeState reads a stored rules state in either form.
func decodeState(v []byte, ps *profileState) error {
	if len(v) == 0 || v[0] != codec.Format1 {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		return dec.Decode(ps)
	}
	r := codec.NewReader(v[1:])
	if n, isNil := r.Len(); !isNil {
		ps.Traits = make(map[string]*traitState, n)
		for range n {
			name := r.String()
			if r.Bool() {
				ps.Traits[name] = decodeTraitState(r)
			} else {
				ps.Traits[name] = nil
			}
		}
	}
	if n, isNil := r.Len(); !isNil {
		ps.Audiences = make(map[string]*Membership, n)
		for range n {
			name := r.String()
			if r.Bool() {
				ps.Audiences[name] = &Membership{Member: r.Bool(), EnteredAt: r.Time(), ExitedAt: r.Time()}
			} else {
				ps.Audiences[name] = nil
			}
		}
	}
	return r.Done()
}
