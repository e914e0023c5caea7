package profiles

import (
	"encoding/json"
	"slices"
	"time"
	"unicode/utf8"
)

// encodeEvent is json.Marshal(e), byte for byte, without reflection: every
// event acknowledged is encoded once for the event log and again when it is
// stored, and encoding/json's reflection on the maps was a fifth of a
// handler's CPU. Values it does not know (none come from decoding) are
// handed to encoding/json. TestEncodeEventIsMarshal and FuzzDecode check
// that the bytes are json.Marshal's.
func encodeEvent(e *Event) ([]byte, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"messageId":`...)
	b = appendJSONString(b, e.MessageID)
	var err error
	for _, f := range [...]struct {
		name, v string
	}{{`,"userId":`, e.UserID}, {`,"anonymousId":`, e.AnonymousID}, {`,"previousId":`, e.PreviousID},
		{`,"groupId":`, e.GroupID}, {`,"event":`, e.Event}, {`,"name":`, e.Name}} {
		if f.v != "" {
			b = append(b, f.name...)
			b = appendJSONString(b, f.v)
		}
	}
	for _, f := range [...]struct {
		name string
		m    map[string]any
	}{{`,"properties":`, e.Properties}, {`,"traits":`, e.Traits}, {`,"context":`, e.Context}} {
		if len(f.m) > 0 {
			b = append(b, f.name...)
			if b, err = appendJSONMap(b, f.m); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range [...]struct {
		name string
		t    time.Time
		omit bool
	}{{`,"timestamp":`, e.Timestamp, false}, {`,"originalTimestamp":`, e.OriginalTimestamp, true},
		{`,"sentAt":`, e.SentAt, true}, {`,"receivedAt":`, e.ReceivedAt, false}} {
		if f.omit && f.t.IsZero() {
			continue
		}
		b = append(b, f.name...)
		if b, err = appendJSONTime(b, f.t); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	if e.Verified {
		b = append(b, `,"verified":true`...)
	}
	return append(b, '}'), nil
}

// appendJSONTime is time.Time's MarshalJSON, which refuses years outside
// 0–9999 (encoding/json says why).
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		v, err := json.Marshal(t)
		return append(b, v...), err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONMap writes m with its keys in order, as encoding/json does.
func appendJSONMap(b []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		if b, err = appendJSONValue(b, m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, v), nil
	case bool:
		if v {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case json.Number:
		if v != "" && !isJSONNumber(string(v)) {
			break // encoding/json's error
		}
		if v == "" {
			return append(b, '0'), nil
		}
		return append(b, v...), nil
	case map[string]any:
		return appendJSONMap(b, v)
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		var err error
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendJSONValue(b, x); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}

// isJSONNumber reports whether s is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	digits := func(i int) int {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = digits(i + 1)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping
// (its default): <, > and & as \u003c, \u003e, \u0026; invalid UTF-8 as
// \ufffd; U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
