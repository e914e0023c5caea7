package profiles

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// The fast path of decoding. encoding/json reads a batch four times over
// (the body into raw fields, the batch into raw events, each event into raw
// fields, each field into its value), each read checking the syntax first:
// at ingestion that was most of a handler's CPU. The scan below reads a
// body once, with jsontext's strict decoder (valid UTF-8, unique names),
// into the same raw fields, decoding the objects (properties, traits,
// context) on the way.
//
// It only ever takes input that encoding/json takes the same way: anything
// the strict decoder refuses (bad syntax, invalid UTF-8, a repeated name),
// and any member name that encoding/json would match to a field only by
// its case-insensitive match, makes it give up, and the caller decodes the
// body with encoding/json as before. So what is accepted, and every error
// message, stays encoding/json's (FuzzDecodeAgrees checks that both
// paths give the same events).

// scanner is a pooled strict decoder over one body.
type scanner struct {
	dec  jsontext.Decoder
	buf  bytes.Buffer
	body []byte
}

var scanners = sync.Pool{New: func() any { return new(scanner) }}

func newScanner(body []byte) *scanner {
	s := scanners.Get().(*scanner)
	s.body = body
	// A bytes.Buffer is read in place: the decoder does not copy body.
	s.buf = *bytes.NewBuffer(body)
	s.dec.Reset(&s.buf)
	return s
}

func (s *scanner) release() {
	s.body = nil
	s.buf = bytes.Buffer{}
	s.dec.Reset(&s.buf)
	scanners.Put(s)
}

// raw reads the next value and returns it as a slice of the body.
func (s *scanner) raw() (json.RawMessage, bool) {
	v, err := s.dec.ReadValue()
	if err != nil {
		return nil, false
	}
	end := int(s.dec.InputOffset())
	start := end - len(v)
	if start < 0 || end > len(s.body) {
		return nil, false
	}
	return s.body[start:end:end], true
}

// end reports whether the body holds nothing after the value read.
func (s *scanner) end() bool {
	_, err := s.dec.ReadToken()
	return err == io.EOF
}

// object reads an object's members, handing each name to member, which
// reads the value; false when the next value is not an object or a
// member gives up.
func (s *scanner) object(member func(name string) bool) bool {
	if t, err := s.dec.ReadToken(); err != nil || t.Kind() != '{' {
		return false
	}
	for s.dec.PeekKind() != '}' {
		t, err := s.dec.ReadToken()
		if err != nil || t.Kind() != '"' {
			return false
		}
		if !member(t.String()) {
			return false
		}
	}
	_, err := s.dec.ReadToken()
	return err == nil
}

// value decodes the next value as encoding/json does into an any with
// UseNumber: objects map[string]any, arrays []any, numbers json.Number.
func (s *scanner) value() (any, bool) {
	switch s.dec.PeekKind() {
	case '{':
		return s.mapValue()
	case '[':
		if _, err := s.dec.ReadToken(); err != nil {
			return nil, false
		}
		a := []any{}
		for s.dec.PeekKind() != ']' {
			v, ok := s.value()
			if !ok {
				return nil, false
			}
			a = append(a, v)
		}
		if _, err := s.dec.ReadToken(); err != nil {
			return nil, false
		}
		return a, true
	}
	t, err := s.dec.ReadToken()
	if err != nil {
		return nil, false
	}
	switch t.Kind() {
	case '"':
		return t.String(), true
	case '0':
		return json.Number(t.String()), true
	case 't':
		return true, true
	case 'f':
		return false, true
	case 'n':
		return nil, true
	}
	return nil, false
}

func (s *scanner) mapValue() (map[string]any, bool) {
	m := map[string]any{}
	ok := s.object(func(name string) bool {
		v, ok := s.value()
		m[name] = v
		return ok
	})
	return m, ok
}

// field reads a member's value into raw, and an object's value into
// obj too (when obj is not nil).
func (s *scanner) field(raw *json.RawMessage, obj *map[string]any) bool {
	if obj != nil && s.dec.PeekKind() == '{' {
		m, ok := s.mapValue()
		*obj = m
		*raw = objectMark
		return ok
	}
	r, ok := s.raw()
	*raw = r
	return ok
}

// objectMark stands for an object's raw text once the scan decoded it: it
// is neither empty nor null, and starts as an object does.
var objectMark = json.RawMessage("{}")

// foldsTo reports whether encoding/json would match name to one of the
// fields only case-insensitively: the scan gives up on such a name.
func foldsTo(name string, fields ...string) bool {
	for _, f := range fields {
		if strings.EqualFold(name, f) {
			return true
		}
	}
	return false
}

var wireEventFields = []string{"type", "messageId", "userId", "anonymousId", "previousId", "groupId",
	"event", "name", "properties", "traits", "context", "timestamp", "sentAt"}

// eventMember reads one member of a message into w.
func (s *scanner) eventMember(w *wireEvent, name string) bool {
	switch name {
	case "type":
		return s.field(&w.Type, nil)
	case "messageId":
		return s.field(&w.MessageID, nil)
	case "userId":
		return s.field(&w.UserID, nil)
	case "anonymousId":
		return s.field(&w.AnonymousID, nil)
	case "previousId":
		return s.field(&w.PreviousID, nil)
	case "groupId":
		return s.field(&w.GroupID, nil)
	case "event":
		return s.field(&w.Event, nil)
	case "name":
		return s.field(&w.Name, nil)
	case "properties":
		return s.field(&w.Properties, &w.properties)
	case "traits":
		return s.field(&w.Traits, &w.traits)
	case "context":
		return s.field(&w.Context, &w.context)
	case "timestamp":
		return s.field(&w.Timestamp, nil)
	case "sentAt":
		return s.field(&w.SentAt, nil)
	}
	if foldsTo(name, wireEventFields...) {
		return false
	}
	return s.dec.SkipValue() == nil
}

// scanEvent reads one message body into w; false: decode it with
// encoding/json instead.
func scanEvent(body []byte, w *wireEvent) bool {
	s := newScanner(body)
	defer s.release()
	return s.object(func(name string) bool { return s.eventMember(w, name) }) && s.end()
}

// scanBatch reads a /v1/batch body; false: decode it with encoding/json
// instead.
func scanBatch(body []byte, w *wireBatch) ([]wireEvent, bool) {
	s := newScanner(body)
	defer s.release()
	var events []wireEvent
	ok := s.object(func(name string) bool {
		switch name {
		case "sentAt":
			return s.field(&w.SentAt, nil)
		case "context":
			return s.field(&w.Context, &w.context)
		case "batch":
			// Anything but an array of objects, each within
			// MaxEventBytes, is left to encoding/json, whose error
			// names the member.
			if s.dec.PeekKind() != '[' {
				return false
			}
			w.Batch = json.RawMessage("[]")
			if _, err := s.dec.ReadToken(); err != nil {
				return false
			}
			for s.dec.PeekKind() != ']' {
				if s.dec.PeekKind() != '{' {
					return false
				}
				// From the end of the previous member: a little more
				// than the event itself, never less.
				start := s.dec.InputOffset()
				events = append(events, wireEvent{})
				we := &events[len(events)-1]
				if !s.object(func(name string) bool { return s.eventMember(we, name) }) ||
					s.dec.InputOffset()-start > MaxEventBytes {
					return false
				}
			}
			_, err := s.dec.ReadToken()
			return err == nil
		}
		if foldsTo(name, "batch", "sentAt", "context") {
			return false
		}
		return s.dec.SkipValue() == nil
	})
	if !ok || !s.end() || w.Batch == nil {
		return nil, false
	}
	return events, true
}

// quickString unquotes a JSON string without escapes or control
// characters, the common case, without encoding/json; false otherwise.
func quickString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	ascii := true
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	if !ascii && !utf8.Valid(in) {
		// encoding/json replaces what is not UTF-8.
		return "", false
	}
	return string(in), true
}

// scanStored decodes a stored event record (the JSON form of Event) into
// e; false: decode it with encoding/json instead.
func scanStored(v []byte, e *Event) bool {
	s := newScanner(v)
	defer s.release()
	str := func(dst *string) bool {
		t, err := s.dec.ReadToken()
		switch {
		case err != nil:
			return false
		case t.Kind() == '"':
			*dst = t.String()
			return true
		}
		return t.Kind() == 'n'
	}
	obj := func(dst *map[string]any) bool {
		if s.dec.PeekKind() == 'n' {
			_, err := s.dec.ReadToken()
			*dst = nil
			return err == nil
		}
		if s.dec.PeekKind() != '{' {
			return false
		}
		m, ok := s.mapValue()
		*dst = m
		return ok
	}
	tm := func(dst *time.Time) bool {
		t, err := s.dec.ReadToken()
		if err != nil || t.Kind() != '"' {
			return false
		}
		// What time.Time's UnmarshalJSON takes.
		return dst.UnmarshalText([]byte(t.String())) == nil
	}
	ok := s.object(func(name string) bool {
		switch name {
		case "type":
			return str(&e.Type)
		case "messageId":
			return str(&e.MessageID)
		case "userId":
			return str(&e.UserID)
		case "anonymousId":
			return str(&e.AnonymousID)
		case "previousId":
			return str(&e.PreviousID)
		case "groupId":
			return str(&e.GroupID)
		case "event":
			return str(&e.Event)
		case "name":
			return str(&e.Name)
		case "source":
			return str(&e.Source)
		case "properties":
			return obj(&e.Properties)
		case "traits":
			return obj(&e.Traits)
		case "context":
			return obj(&e.Context)
		case "timestamp":
			return tm(&e.Timestamp)
		case "originalTimestamp":
			return tm(&e.OriginalTimestamp)
		case "sentAt":
			return tm(&e.SentAt)
		case "receivedAt":
			return tm(&e.ReceivedAt)
		case "verified":
			t, err := s.dec.ReadToken()
			if err != nil || (t.Kind() != 't' && t.Kind() != 'f') {
				return false
			}
			e.Verified = t.Bool()
			return true
		}
		if foldsTo(name, storedEventFields...) {
			return false
		}
		return s.dec.SkipValue() == nil
	})
	return ok && s.end()
}

var storedEventFields = []string{"type", "messageId", "userId", "anonymousId", "previousId", "groupId",
	"event", "name", "source", "properties", "traits", "context", "timestamp", "originalTimestamp",
	"sentAt", "receivedAt", "verified"}
