// Package codec is the compact binary encoding of values Cartera stores
// for itself (profiles, rules state, journey instances): what people read
// back goes out as JSON through the API, so the file need not hold JSON.
//
// A stored value in this encoding starts with a format byte that JSON
// never starts with (Format1), so readers tell the two apart and records
// written as JSON by earlier versions still decode.
//
// Values of type any keep what a JSON round trip with UseNumber would
// give: strings, booleans, nil, json.Number, map[string]any and []any are
// encoded as such; anything else (a float64 set by code, a time) is
// encoded as its JSON text and decoded from it with UseNumber, as before.
package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Format1 is the first byte of a value in this encoding.
const Format1 = 0x01

// Format2 is the first byte of a value in this encoding whose layout grew
// since Format1 (each record type says what it adds), so that a reader
// tells the layouts apart and a value cut short in either fails.
const Format2 = 0x02

// ErrCorrupt is returned for a value that ends early or holds an unknown tag.
var ErrCorrupt = errors.New("codec: corrupt value")

// Writer appends values to B.
type Writer struct {
	B []byte
}

// Uvarint appends an unsigned integer.
func (w *Writer) Uvarint(u uint64) { w.B = binary.AppendUvarint(w.B, u) }

// Varint appends a signed integer.
func (w *Writer) Varint(i int64) { w.B = binary.AppendVarint(w.B, i) }

// Int appends an int.
func (w *Writer) Int(i int) { w.Varint(int64(i)) }

// String appends a string.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.B = append(w.B, s...)
}

// Bytes appends a byte slice, keeping nil apart from empty.
func (w *Writer) Bytes(b []byte) {
	if b == nil {
		w.Uvarint(0)
		return
	}
	w.Uvarint(uint64(len(b)) + 1)
	w.B = append(w.B, b...)
}

// Bool appends a boolean.
func (w *Writer) Bool(b bool) {
	if b {
		w.B = append(w.B, 1)
	} else {
		w.B = append(w.B, 0)
	}
}

// Float appends a float64.
func (w *Writer) Float(f float64) { w.B = binary.LittleEndian.AppendUint64(w.B, math.Float64bits(f)) }

// Len appends the length of a slice or map, keeping nil apart from empty.
func (w *Writer) Len(n int, isNil bool) {
	if isNil {
		w.Uvarint(0)
		return
	}
	w.Uvarint(uint64(n) + 1)
}

// Time appends a time with its zone offset; the zero time stays zero.
func (w *Writer) Time(t time.Time) {
	if t.IsZero() && t.Location() == time.UTC {
		w.B = append(w.B, 0)
		return
	}
	var buf [16]byte
	b, err := t.AppendBinary(buf[:0])
	if err != nil {
		// An offset the format cannot carry: keep the instant, in UTC.
		b, _ = t.UTC().AppendBinary(buf[:0])
	}
	w.B = append(w.B, byte(len(b)))
	w.B = append(w.B, b...)
}

// Value tags.
const (
	tagNil = iota
	tagFalse
	tagTrue
	tagString
	tagNumber
	tagMap
	tagList
	tagJSON
)

// Value appends a JSON-like value.
func (w *Writer) Value(v any) error {
	switch x := v.(type) {
	case nil:
		w.B = append(w.B, tagNil)
	case bool:
		if x {
			w.B = append(w.B, tagTrue)
		} else {
			w.B = append(w.B, tagFalse)
		}
	case string:
		w.B = append(w.B, tagString)
		w.String(x)
	case json.Number:
		w.B = append(w.B, tagNumber)
		w.String(string(x))
	case int64:
		w.B = append(w.B, tagNumber)
		w.Uvarint(uint64(countDigits(x)))
		w.B = strconv.AppendInt(w.B, x, 10)
	case int:
		return w.Value(int64(x))
	case time.Time:
		// As JSON has it: an RFC 3339 string.
		if y := x.Year(); y >= 0 && y <= 9999 {
			w.B = append(w.B, tagString)
			w.String(x.Format(time.RFC3339Nano))
			return nil
		}
		return w.json(v)
	case map[string]any:
		if x == nil {
			w.B = append(w.B, tagNil)
			return nil
		}
		w.B = append(w.B, tagMap)
		w.Uvarint(uint64(len(x)))
		for k, e := range x {
			w.String(k)
			if err := w.Value(e); err != nil {
				return err
			}
		}
	case []any:
		if x == nil {
			w.B = append(w.B, tagNil)
			return nil
		}
		w.B = append(w.B, tagList)
		w.Uvarint(uint64(len(x)))
		for _, e := range x {
			if err := w.Value(e); err != nil {
				return err
			}
		}
	default:
		return w.json(v)
	}
	return nil
}

// json appends a value of any other type as its JSON text.
func (w *Writer) json(v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.B = append(w.B, tagJSON)
	w.Bytes(j)
	return nil
}

func countDigits(x int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], x, 10))
}

// Map appends a map[string]any, keeping nil apart from empty.
func (w *Writer) Map(m map[string]any) error {
	w.Len(len(m), m == nil)
	for k, v := range m {
		w.String(k)
		if err := w.Value(v); err != nil {
			return err
		}
	}
	return nil
}

// Reader reads values in the order they were written. After the first
// error every read returns a zero value and Err reports it.
type Reader struct {
	b   []byte
	n   int // len of the b it was made with
	err error
}

// NewReader reads b, which must stay unchanged while read (strings are
// copied out).
func NewReader(b []byte) *Reader { return &Reader{b: b, n: len(b)} }

// Err is the first error met.
func (r *Reader) Err() error { return r.err }

func (r *Reader) fail() {
	if r.err == nil {
		r.err = ErrCorrupt
	}
	r.b = nil
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Uvarint reads an unsigned integer.
func (r *Reader) Uvarint() uint64 {
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return u
}

// Varint reads a signed integer.
func (r *Reader) Varint() int64 {
	i, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return i
}

// Int reads an int.
func (r *Reader) Int() int { return int(r.Varint()) }

func (r *Reader) take(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.fail()
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// String reads a string.
func (r *Reader) String() string { return string(r.take(r.Uvarint())) }

// StringIn reads a string as a slice of s, which holds the bytes the
// Reader was made with (string(b)): no copy is made, so the strings of a
// value read this way cost one allocation between them, s's.
func (r *Reader) StringIn(s string) string {
	n := r.Uvarint()
	at := r.n - len(r.b)
	if r.take(n) == nil || len(s) != r.n {
		if len(s) != r.n {
			r.fail()
		}
		return ""
	}
	return s[at : at+int(n)]
}

// Bytes reads a byte slice (a copy).
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if n == 0 {
		return nil
	}
	return bytes.Clone(r.take(n - 1))
}

// Bool reads a boolean.
func (r *Reader) Bool() bool { return r.Byte() == 1 }

// Float reads a float64.
func (r *Reader) Float() float64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

// Len reads a length; isNil says the slice or map was nil.
func (r *Reader) Len() (n int, isNil bool) {
	u := r.Uvarint()
	if u == 0 {
		return 0, true
	}
	if u-1 > uint64(len(r.b)) { // every element takes at least a byte
		r.fail()
		return 0, true
	}
	return int(u - 1), false
}

// Time reads a time.
func (r *Reader) Time() time.Time {
	n := r.Byte()
	if n == 0 {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary(r.take(uint64(n))); err != nil {
		r.fail()
	}
	return t
}

// Value reads a JSON-like value.
func (r *Reader) Value() any {
	switch tag := r.Byte(); tag {
	case tagNil:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagString:
		return r.String()
	case tagNumber:
		return json.Number(r.String())
	case tagMap:
		n := r.Uvarint()
		if n > uint64(len(r.b)) {
			r.fail()
			return nil
		}
		m := make(map[string]any, n)
		for range n {
			k := r.String()
			m[k] = r.Value()
		}
		return m
	case tagList:
		n := r.Uvarint()
		if n > uint64(len(r.b)) {
			r.fail()
			return nil
		}
		l := make([]any, n)
		for i := range l {
			l[i] = r.Value()
		}
		return l
	case tagJSON:
		j := r.Bytes()
		var v any
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			r.fail()
			return nil
		}
		return v
	default:
		r.fail()
		return nil
	}
}

// Map reads a map[string]any.
func (r *Reader) Map() map[string]any {
	n, isNil := r.Len()
	if isNil {
		return nil
	}
	m := make(map[string]any, n)
	for range n {
		k := r.String()
		m[k] = r.Value()
	}
	return m
}

// Done reports an error unless the whole value was read.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes left over", ErrCorrupt, len(r.b))
	}
	return r.err
}
