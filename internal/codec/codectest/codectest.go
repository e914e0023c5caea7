// Package codectest checks a record type's binary form against the JSON
// form earlier versions stored: both must decode to the same value, and a
// truncated binary record must fail to decode rather than read short.
package codectest

import (
	"encoding/json"
	"testing"
)

// Migration encodes v both ways and checks the decodings agree (compared
// through JSON, as time zones decode to equal but not identical
// locations), then that every truncation of the binary form is refused.
func Migration[T any](t *testing.T, v *T, encode func(*T) ([]byte, error), decode func([]byte, *T) error) {
	t.Helper()
	old, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromBin T
	if err := decode(old, &fromJSON); err != nil {
		t.Fatalf("decode JSON record: %v", err)
	}
	bin, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := decode(bin, &fromBin); err != nil {
		t.Fatalf("decode binary record: %v", err)
	}
	a, _ := json.Marshal(&fromJSON)
	b, _ := json.Marshal(&fromBin)
	if string(a) != string(b) {
		t.Errorf("binary round trip differs from JSON's:\n got %s\nwant %s", b, a)
	}
	for i := 1; i < len(bin); i++ {
		var q T
		if err := decode(bin[:i], &q); err == nil {
			t.Fatalf("decoding %d of %d bytes did not fail", i, len(bin))
		}
	}
	t.Logf("JSON %d bytes, binary %d bytes", len(old), len(bin))
}
