package journeys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"cartera/rules"
)

// FuzzParsePolicy: no policies file makes the parser panic, and every
// error is a list of mistakes that point into the file.
func FuzzParsePolicy(f *testing.F) {
	for _, src := range []string{"", "quiet_hours: {start: \"21:00\", end: \"09:00\", timezone: Europe/Madrid}\n", "frequency_caps: [", "consent: {email: true}\n", "on_cap: later\n"} {
		f.Add(src)
	}
	if b, err := os.ReadFile(filepath.Join("..", "examples", "policies.yaml")); err == nil {
		f.Add(string(b))
	}
	env, _ := parseEnv(f)
	f.Fuzz(func(t *testing.T, src string) {
		_, err := ParsePolicy("policies.yaml", []byte(src), env)
		if err == nil {
			return
		}
		var errs rules.FileErrors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("ParsePolicy = %T %v, want rules.FileErrors", err, err)
		}
		for _, e := range errs {
			if e.File != "policies.yaml" || e.Line < 1 || e.Col < 1 {
				t.Fatalf("error outside the file: %+v", e)
			}
		}
	})
}

// FuzzRecordCodec: the binary records of instances and entries never make
// the decoder panic, and what decodes encodes and decodes again.
func FuzzRecordCodec(f *testing.F) {
	in := &Instance{ID: 42, Journey: "cart_abandonment", Version: "abc", ProfileID: "p1", Key: "c-1", Step: "opened",
		Trigger:   &TriggerRecord{Name: "Product Added", Type: "track", Properties: map[string]any{"cart_id": "c-1"}},
		Audiences: []string{"retargeting"}, Steps: map[string]int{"a": 1}}
	if b, err := encodeInstance(in); err == nil {
		f.Add(b)
	}
	f.Add(encodeEntry(entryRecord{Entries: 3}))
	f.Add([]byte(`{"id":1,"journey":"j"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got Instance
		if err := decodeInstance(b, &got); err == nil {
			again, err := encodeInstance(&got)
			if err != nil {
				t.Fatalf("re-encode a decoded instance: %v", err)
			}
			var back Instance
			if err := decodeInstance(again, &back); err != nil {
				t.Fatalf("decode a re-encoded instance: %v", err)
			}
		}
		var rec entryRecord
		if err := decodeEntry(b, &rec); err == nil {
			var back entryRecord
			if err := decodeEntry(encodeEntry(rec), &back); err != nil || back != rec {
				t.Fatalf("entry round trip: %+v, %v; want %+v", back, err, rec)
			}
		}
	})
}
