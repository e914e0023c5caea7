package rules

import (
	"testing"
)

// FuzzStateCodec: a profile's stored rule state never makes the decoder
// panic, and what decodes encodes and decodes again.
func FuzzStateCodec(f *testing.F) {
	lo := 1.5
	ps := &profileState{Traits: map[string]*traitState{
		"orders_count": {Hash: "a", N: 3},
		"ltv":          {Hash: "b", N: 2, Sum: 41.5, Min: &lo},
		"favourite":    {Hash: "d", Freq: map[string]int64{"shoes": 3}, Values: []seenValue{{V: "x", At: 5}}},
		"orders_90d":   {Hash: "e", Buckets: []bucket{{T: 1, N: 1, Last: "pos", Freq: map[string]int64{"a": 1}}}},
	}}
	if b, err := encodeState(ps, nil); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"traits":{"a":{"hash":"x","n":1}}}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got profileState
		if err := decodeState(b, &got); err != nil {
			return
		}
		again, err := encodeState(&got, nil)
		if err != nil {
			t.Fatalf("re-encode a decoded state: %v", err)
		}
		var back profileState
		if err := decodeState(again, &back); err != nil {
			t.Fatalf("decode a re-encoded state: %v", err)
		}
	})
}
