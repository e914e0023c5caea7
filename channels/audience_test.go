package channels

import (
	"errors"
	"reflect"
	"testing"
)

func TestLatestPerPerson(t *testing.T) {
	msgs := []*Message{
		{Key: "a1", ProfileID: "ana", Payload: []byte(`{"audience":"vip","op":"add"}`)},
		{Key: "b1", ProfileID: "ben", Payload: []byte(`{"audience":"vip","op":"add"}`)},
		{Key: "a2", ProfileID: "ana", Payload: []byte(`{"audience":"vip","op":"remove"}`)},
		{Key: "a3", ProfileID: "ana", Payload: []byte(`{"audience":"other","op":"add"}`)},
		{Key: "x", ProfileID: "", Payload: []byte(`{"op":"add"}`)},
		{Key: "y", ProfileID: "", Payload: []byte(`{"op":"add"}`)},
		{Key: "bad", ProfileID: "ana", Payload: []byte(`{"audience":"vip","op":"swap"}`)},
		{Key: "broken", ProfileID: "ben", Payload: []byte(`{`)},
	}
	out := make([]Result, len(msgs))
	kept := LatestPerPerson(msgs, out, func(i int, m *Message) (string, string, error) {
		p, err := DecodeAudience("test", "fallback", m)
		if err != nil {
			return "", "", err
		}
		return p.Audience, m.Key + ":" + p.Audience + ":" + p.Op, nil
	})
	// a1 is overridden by a2; a bad later message overrides nothing.
	want := []string{"b1:vip:add", "a2:vip:remove", "a3:other:add", "x:fallback:add", "y:fallback:add"}
	if !reflect.DeepEqual(kept, want) {
		t.Fatalf("kept = %v, want %v", kept, want)
	}
	if out[0].Err != nil || out[2].Err != nil {
		t.Fatalf("kept or overridden messages got errors: %v %v", out[0].Err, out[2].Err)
	}
	if !IsPermanent(out[6].Err) || !IsPermanent(out[7].Err) {
		t.Fatalf("undecodable messages: %v, %v; want permanent errors", out[6].Err, out[7].Err)
	}
	if errors.Is(out[6].Err, ErrNoConsent) {
		t.Fatal("a bad op is not a consent refusal")
	}
}
