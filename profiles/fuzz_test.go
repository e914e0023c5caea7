package profiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fuzzSeeds are valid and invalid single messages; the batch seeds wrap them.
var fuzzSeeds = []string{
	`{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed","properties":{"revenue":12.5,"products":[{"sku":"a","price":3}]},"timestamp":"2026-03-02T10:00:00Z","sentAt":"2026-03-02T10:00:05Z"}`,
	`{"type":"identify","anonymousId":"a1","traits":{"email":" Ana@Example.com","phone":"600 11 22 33","consent":{"email":true,"source":"form"}},"context":{"traits":{"email":"x@y.z"}}}`,
	`{"type":"page","anonymousId":"a1","name":"Home","properties":{"path":"/"},"timestamp":"2026-03-02T13:00:00+01:00"}`,
	`{"type":"screen","userId":42,"name":"Cart"}`,
	`{"type":"group","userId":"u1","groupId":7,"traits":{"plan":"team"}}`,
	`{"type":"alias","userId":"u1","previousId":"a1"}`,
	`{"type":"track","userId":"u1","event":"Consent Updated","properties":{"email":false,"sms":true}}`,
	`{"event":"Signed In","userId":"u1","timestamp":"2026-03-01","sentAt":"2026-03-01T00:00:05"}`,
	`{"type":"track","userId":"u1","event":"x","timestamp":"9999-12-31T23:30:00-01:00"}`,
	`{"type":"track","userId":"u1","event":"x","timestamp":"0000-01-01T00:30:00+01:00","sentAt":"9999-12-31T23:59:59Z"}`,
	`{"type":"track","userId":"  ","event":"x"}`,
	`{"type":"track","userId":"u1","event":"x","properties":{"revenue":"12"}}`,
	`{"type":"identify","userId":{"a":1}}`,
	`{"type":"alias","userId":"u1","previousId":" "}`,
	`{"type":"purchase","userId":"u1"}`,
	`{"type":"track",` + "\n" + `"event": }`,
	`{"Type":"track","userId":"u1","event":"x","messageId":"m1","MessageID":"m2"}`,
	`{"type":"track","userId":"u1","event":"x","meſſageId":"m9","properties":{"a":1,"a":[2,{"b":null}]}}`,
	`{"type":"track","userId":"u\u00e9\ud800","event":"x\n","properties":{"k\u0041":"\ud83d\ude00","n":-1.5e+300}}`,
	"{\"type\":\"track\",\"userId\":\"u\xff\",\"event\":\"caf\xc3\xa9\",\"context\":{\"k\":\"\xfe\"}}",
	`{"type":"track","userId":"u1","event":"x","context":null,"traits":{},"properties":[]} `,
	`[1,2]`,
	`null`,
	`"x"`,
	``,
}

// fuzzReceived is the receipt time of fuzzed messages.
var fuzzReceived = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// checkDecoded is the property of both decoders: an accepted event is
// usable (a known type, an identifier to resolve, encodable for storage);
// a refusal is a ValidationError or ErrTooLarge, never anything else.
func checkDecoded(t *testing.T, e *Event, err error) {
	t.Helper()
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error %v (%T) is neither a *ValidationError nor ErrTooLarge", err, err)
		}
		if err.Error() == "" {
			t.Fatal("empty error message")
		}
		return
	}
	switch e.Type {
	case TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias:
	default:
		t.Fatalf("accepted type %q", e.Type)
	}
	blank := func(s string) bool { return strings.TrimSpace(s) == "" }
	if e.Type == TypeAlias {
		if blank(e.UserID) || blank(e.PreviousID) {
			t.Fatalf("accepted alias without userId or previousId: %+v", e)
		}
	} else if blank(e.UserID) && blank(e.AnonymousID) {
		t.Fatalf("accepted %s without userId or anonymousId: %+v", e.Type, e)
	}
	if e.Type == TypeTrack && blank(e.Event) {
		t.Fatalf("accepted track without event name")
	}
	if e.MessageID == "" {
		t.Fatalf("accepted event without messageId")
	}
	if e.Timestamp.IsZero() {
		t.Fatalf("accepted event without timestamp")
	}
	if e.Timestamp.Sub(e.ReceivedAt) > DefaultMaxSkew {
		t.Fatalf("accepted timestamp %s more than %s after the receipt %s", e.Timestamp, DefaultMaxSkew, e.ReceivedAt)
	}
	if _, err := json.Marshal(e); err != nil {
		t.Fatalf("accepted event cannot be stored: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	endpoints := []string{"", TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias}
	f.Fuzz(func(t *testing.T, body []byte, endpoint uint8) {
		opts := DecodeOptions{
			Type:       endpoints[int(endpoint)%len(endpoints)],
			Source:     "fuzz",
			ReceivedAt: fuzzReceived,
			NewID:      func() string { return "generated" },
		}
		e, err := Decode(body, opts)
		if (e == nil) == (err == nil) {
			t.Fatalf("Decode returned event %v and error %v", e, err)
		}
		checkDecoded(t, e, err)
		if e != nil {
			checkEncodeEvent(t, e)
		}
		slow, slowErr := decodeSlow(body, opts)
		agree(t, []*Event{e}, err, []*Event{slow}, slowErr)
	})
}

// agree fails unless the fast path (wirescan.go) and encoding/json's
// decoded a body the same way: the same events, or the same error.
func agree[T any](t *testing.T, fast T, fastErr error, slow T, slowErr error) {
	t.Helper()
	if fmt.Sprint(fastErr) != fmt.Sprint(slowErr) {
		t.Fatalf("fast path's error %v, encoding/json's %v", fastErr, slowErr)
	}
	if fastErr == nil && !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast path and encoding/json disagree:\nfast %s\nslow %s", dump(fast), dump(slow))
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func FuzzDecodeBatch(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(`{"batch":[` + s + `]}`))
		f.Add([]byte(`{"sentAt":"2026-03-02T10:00:05Z","context":{"ip":"192.0.2.1"},"batch":[` + fuzzSeeds[0] + `,` + s + `,` + fuzzSeeds[(i+1)%len(fuzzSeeds)] + `]}`))
	}
	f.Add([]byte(`{"batch":[]}`))
	f.Add([]byte(`{"batch":{}}`))
	f.Add([]byte(`{"batch":[7]}`))
	f.Add([]byte(`{"sentAt":5,"batch":[{"type":"page","userId":"u1"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		opts := DecodeOptions{Source: "fuzz", ReceivedAt: fuzzReceived, NewID: func() string { return "generated" }}
		evs, err := DecodeBatch(body, opts)
		slow, slowErr := decodeBatchSlow(body, opts)
		agree(t, evs, err, slow, slowErr)
		if err != nil {
			if evs != nil {
				t.Fatalf("DecodeBatch returned %d events with error %v", len(evs), err)
			}
			checkDecoded(t, nil, err)
			return
		}
		if len(evs) == 0 {
			t.Fatal("DecodeBatch accepted an empty batch")
		}
		for _, e := range evs {
			checkDecoded(t, e, nil)
		}
	})
}

// FuzzParseIdentifier: the admin API's kind:value never makes the parser
// panic, and what it accepts has a kind and a value.
func FuzzParseIdentifier(f *testing.F) {
	for _, s := range []string{"user_id:u1", "email:Ana@Example.com", "phone:+34 600 11 22 33", "profile_id:019cadc69a80e6b7a03af69e", "nope", ":", "email:", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentifier(s)
		if err == nil && (id.Kind == "" || id.Value == "") {
			t.Fatalf("ParseIdentifier(%q) = %+v without an error", s, id)
		}
	})
}

// FuzzRecordCodec: stored profile and event records never make the
// decoders panic, and a profile that decodes encodes and decodes again.
func FuzzRecordCodec(f *testing.F) {
	if b, err := encodeProfile(codecProfile(), nil); err == nil {
		f.Add(b)
	}
	if b, err := json.Marshal(codecProfile()); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"type":"track","event":"x","messageId":"m"}`))
	for _, seed := range fuzzSeeds {
		if e, err := Decode([]byte(seed), DecodeOptions{Source: "fuzz", ReceivedAt: fuzzReceived, NewID: func() string { return "generated" }}); err == nil {
			if b, err := json.Marshal(e); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`{"type":"track","timestamp":"2026-03-02T10:00:00+01:00","receivedAt":null,"verified":true,"Source":"x"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e, slow Event
		err := decodeEvent(b, &e)
		slowErr := decodeStoredSlow(b, &slow)
		if err == nil && slowErr != nil {
			// encoding/json keeps what it decoded before an error.
			t.Fatalf("decodeEvent took %q, encoding/json refused it: %v", b, slowErr)
		}
		if err == nil {
			agree(t, e, err, slow, slowErr)
			checkEncodeEvent(t, &e)
		}
		var p Profile
		if err := decodeProfile(b, &p); err != nil {
			return
		}
		again, err := encodeProfile(&p, nil)
		if err != nil {
			t.Fatalf("re-encode a decoded profile: %v", err)
		}
		var back Profile
		if err := decodeProfile(again, &back); err != nil {
			t.Fatalf("decode a re-encoded profile: %v", err)
		}
	})
}

// TestFastPathTakes: the one-read decoding of wirescan.go takes what SDKs
// send and what the store writes, and leaves to encoding/json only what it
// must (FuzzDecode and FuzzDecodeBatch check that both paths agree).
func TestFastPathTakes(t *testing.T) {
	opts := DecodeOptions{Source: "web", ReceivedAt: fuzzReceived, NewID: func() string { return "generated" }}
	for _, tc := range []struct {
		body string
		fast bool
	}{
		{fuzzSeeds[0], true},
		{fuzzSeeds[1], true},
		{`{"type":"screen","userId":42,"name":"Cart","unknown":{"x":[1,true,null]}}`, true},
		{`{"type":"track","userId":"u\u00e9","event":"caf\u00e9 \ud83d\ude00"}`, true},
		{`{"Type":"track","userId":"u1","event":"x"}`, false},                              // matched by case only
		{`{"type":"track","userId":"u1","event":"x","properties":{"a":1,"a":2}}`, false},   // a repeated name
		{"{\"type\":\"track\",\"userId\":\"u\xff\",\"event\":\"x\"}", false},               // not UTF-8
		{`{"type":"track","userId":"u1","event":"x"} {}`, false},                           // more after it
		{`{"type":"track","userId":"u1","event":"x","properties":{"revenue":"12"}}`, true}, // refused, by decodeWire
	} {
		var w wireEvent
		if got := scanEvent([]byte(tc.body), &w); got != tc.fast {
			t.Errorf("scanEvent(%s) = %v, want %v", tc.body, got, tc.fast)
		}
		batch := `{"sentAt":"2026-03-02T10:00:05Z","batch":[` + tc.body + `]}`
		var wb wireBatch
		if _, got := scanBatch([]byte(batch), &wb); got != tc.fast {
			t.Errorf("scanBatch(%s) = %v, want %v", batch, got, tc.fast)
		}
		if !tc.fast {
			continue
		}
		e, err := Decode([]byte(tc.body), opts)
		if err != nil {
			continue
		}
		stored, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back, slow Event
		if !scanStored(stored, &back) {
			t.Errorf("scanStored(%s) fell back to encoding/json", stored)
			continue
		}
		// What it read is what encoding/json reads.
		agree(t, back, nil, slow, decodeStoredSlow(stored, &slow))
	}
}

// FuzzRoutedRecord feeds the parsers of a cluster's routed log records
// (what a partition reads from the stream) arbitrary bytes: the address,
// a routed event's foreign identifiers, a merge step. None may panic; a
// merge step that parses encodes back to one that encodes the same, and an
// address read is given back by RoutedRecord.
func FuzzRoutedRecord(f *testing.F) {
	pid, other := "0192a3b4c5d6e7f809aabbcc", "0192a3b4c5d6e7f809aabbcd"
	merge := func(m MergeRecord) []byte {
		b, err := MergeBody(m)
		if err != nil {
			f.Fatal(err)
		}
		return RoutedRecord(pid, b)
	}
	foreign, err := RoutedEvent([]byte(fuzzSeeds[0]), []Identifier{{Kind: KindEmail, Value: "ana@example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		[]byte(fuzzSeeds[0]),
		RoutedRecord(pid, []byte(fuzzSeeds[1])),
		RoutedRecord(pid, foreign),
		merge(MergeRecord{Op: MergeOut, Loser: pid, Survivor: other}),
		merge(MergeRecord{Op: MergeIn, Loser: other, Survivor: pid, State: &ProfileState{
			Profile: []byte{1, 2, 3}, Sidecars: map[string][]byte{"m\x00x": {4}}, Events: []StoredEvent{{At: 1, JSON: []byte(`{}`)}}, Dropped: 2}}),
		[]byte("@" + pid + " M{"),
		[]byte("@" + pid + " X[\n{}"),
		[]byte("@" + pid[:23] + "  {}"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		id, body := RecordRoute(rec)
		if id != "" {
			if !ValidProfileID(id) {
				t.Fatalf("address %q is not a profile id", id)
			}
			if again := RoutedRecord(id, body); string(again) != string(rec) {
				t.Fatalf("RoutedRecord(%q, body) = %q, want the record %q", id, again, rec)
			}
		} else if string(body) != string(rec) {
			t.Fatalf("an unaddressed record's body %q is not the record %q", body, rec)
		}
		if ids, event, err := splitForeign(body); err == nil && len(ids) > 0 {
			again, err := RoutedEvent(event, ids)
			if err != nil {
				t.Fatal(err)
			}
			if ids2, event2, err := splitForeign(again); err != nil || !reflect.DeepEqual(ids2, ids) || string(event2) != string(event) {
				t.Fatalf("foreign identifiers %v of %q do not round-trip: %v %q %v", ids, event, ids2, event2, err)
			}
		}
		m, isMerge, err := parseMerge(body)
		if isMerge != (len(body) > 0 && body[0] == mergeMark) {
			t.Fatalf("parseMerge says merge %v of %q", isMerge, body)
		}
		if err != nil || m == nil {
			return
		}
		again, err := MergeBody(*m)
		if err != nil {
			t.Fatal(err)
		}
		// Compared encoded: an empty map and none are the same step.
		m2, _, err := parseMerge(again)
		if err != nil {
			t.Fatalf("merge step %+v encodes to %q, which does not parse: %v", m, again, err)
		}
		if third, err := MergeBody(*m2); err != nil || string(third) != string(again) {
			t.Fatalf("merge step %q parses and encodes as %q, %v", again, third, err)
		}
	})
}
