package rules

import (
	"cartera/internal/codec/codectest"
	"encoding/json"
	"testing"
	"time"
)

// TestStateCodec: the binary form of a rules state decodes to what the
// JSON form of earlier versions decodes to, and JSON records still decode.
func TestStateCodec(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 5, time.UTC)
	lo, hi := 1.5, 99.0
	ps := &profileState{
		Traits: map[string]*traitState{
			"orders_count":   {Hash: "a", N: 3},
			"lifetime_value": {Hash: "b", N: 2, Sum: 411.5, Min: &lo, Max: &hi},
			"last_order_at":  {Hash: "c", N: 2, First: at, FirstAt: at.UnixMilli(), Last: at.Add(time.Hour), LastAt: at.Add(time.Hour).UnixMilli()},
			"favourite":      {Hash: "d", Freq: map[string]int64{"shoes": 3, "bags": 1}, Values: []seenValue{{V: "x", At: 5}}},
			"orders_90d": {Hash: "e", Buckets: []bucket{
				{T: 1, N: 1, First: json.Number("59.7"), Last: "pos", Freq: map[string]int64{"a": 1}},
				{T: 2, N: 2, Sum: 3, Min: 1, Max: 2, First: int64(7), Last: 0.25},
			}},
			"empty": {Hash: "f"},
		},
		Audiences: map[string]*Membership{
			"customers": {Member: true, EnteredAt: at},
			"vip":       {EnteredAt: at, ExitedAt: at.Add(time.Minute)},
		},
	}
	codectest.Migration(t, ps, func(ps *profileState) ([]byte, error) { return encodeState(ps, nil) }, decodeState)
}
