package profiles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"
)

// Event types of the Segment Tracking API.
const (
	TypeTrack    = "track"
	TypeIdentify = "identify"
	TypePage     = "page"
	TypeScreen   = "screen"
	TypeGroup    = "group"
	TypeAlias    = "alias"
)

// Size limits of the Segment Tracking API.
const (
	MaxEventBytes = 32 << 10
	MaxBatchBytes = 500 << 10
)

// Event is one Segment message after decoding, validation and clock-skew
// correction. Its JSON form uses Segment's field names, so what is stored is
// what a Segment user expects to read back.
type Event struct {
	Type              string         `json:"type"`
	MessageID         string         `json:"messageId"`
	UserID            string         `json:"userId,omitempty"`
	AnonymousID       string         `json:"anonymousId,omitempty"`
	PreviousID        string         `json:"previousId,omitempty"`
	GroupID           string         `json:"groupId,omitempty"`
	Event             string         `json:"event,omitempty"`
	Name              string         `json:"name,omitempty"`
	Properties        map[string]any `json:"properties,omitempty"`
	Traits            map[string]any `json:"traits,omitempty"`
	Context           map[string]any `json:"context,omitempty"`
	Timestamp         time.Time      `json:"timestamp"`
	OriginalTimestamp time.Time      `json:"originalTimestamp,omitzero"`
	SentAt            time.Time      `json:"sentAt,omitzero"`
	ReceivedAt        time.Time      `json:"receivedAt"`
	Source            string         `json:"source"`
	// Verified is set at the edge when the message carried a valid
	// identity verification (context.user_hash) for its source; a client
	// cannot set it.
	Verified bool `json:"verified,omitempty"`

	// stored is the event's JSON, encoded by the caller of Ingest so that
	// the single committer does not spend its time on it.
	stored []byte
	// route is the profile a cluster's identity index gave the event
	// (route.go); "" when the store resolves it.
	route string
	// foreign are identifiers of the event that the index keeps on other
	// profiles: not linked to route's.
	foreign []Identifier
}

// ErrTooLarge is returned for an event over MaxEventBytes or a batch over
// MaxBatchBytes; the HTTP edge answers 413.
var ErrTooLarge = errors.New("too large")

// ValidationError says which field of a message is wrong and why. Field is a
// dotted path from the message root ("properties.revenue"); in a batch it
// starts with the index ("batch[3].userId").
type ValidationError struct {
	Field string
	Msg   string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// within prefixes the field of a validation error with a parent path.
func within(prefix string, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		field := prefix
		if ve.Field != "" {
			field += "." + ve.Field
		}
		return &ValidationError{Field: field, Msg: ve.Msg}
	}
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	return err
}

// DecodeOptions carry what the edge knows about a message that is not in it.
type DecodeOptions struct {
	// Type is the type implied by the endpoint (/v1/track → "track"); empty
	// for batch members, which must name their own type.
	Type string
	// Source is the name of the source whose write key sent the message.
	Source string
	// ReceivedAt is the server time of receipt, for clock-skew correction.
	ReceivedAt time.Time
	// NewID makes a messageId for a message that has none.
	NewID func() string
	// MaxSkew is how far past ReceivedAt a corrected timestamp may lie;
	// later ones are clamped to ReceivedAt. Zero means DefaultMaxSkew.
	MaxSkew time.Duration
}

// DefaultMaxSkew is how far in the future of its receipt an event time is
// believed when the config says nothing.
const DefaultMaxSkew = 24 * time.Hour

// Event times outside [minEventTime, maxEventTime) are refused: no real
// event happened before 2000, and a time past 2100 is a typo or an attack
// that would keep an event inside every sliding window.
var (
	minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// wireEvent is a message as sent; fields stay raw so that each can be checked
// with a message that names it.
type wireEvent struct {
	Type        json.RawMessage `json:"type"`
	MessageID   json.RawMessage `json:"messageId"`
	UserID      json.RawMessage `json:"userId"`
	AnonymousID json.RawMessage `json:"anonymousId"`
	PreviousID  json.RawMessage `json:"previousId"`
	GroupID     json.RawMessage `json:"groupId"`
	Event       json.RawMessage `json:"event"`
	Name        json.RawMessage `json:"name"`
	Properties  json.RawMessage `json:"properties"`
	Traits      json.RawMessage `json:"traits"`
	Context     json.RawMessage `json:"context"`
	Timestamp   json.RawMessage `json:"timestamp"`
	SentAt      json.RawMessage `json:"sentAt"`

	// The objects, when the scan of wirescan.go decoded them.
	properties, traits, context map[string]any
}

type wireBatch struct {
	Batch   json.RawMessage `json:"batch"`
	SentAt  json.RawMessage `json:"sentAt"`
	Context json.RawMessage `json:"context"`

	context map[string]any // decoded by the scan
}

// Decode parses and validates one message sent to a single-event endpoint.
func Decode(body []byte, opts DecodeOptions) (*Event, error) {
	if len(body) > MaxEventBytes {
		return nil, fmt.Errorf("event is %d bytes, limit %d: %w", len(body), MaxEventBytes, ErrTooLarge)
	}
	var w wireEvent
	if scanEvent(body, &w) {
		if e, err := decodeWire(&w, opts, time.Time{}, nil); err == nil {
			return e, nil
		}
	}
	// Errors come from encoding/json's path, which names them as it
	// always has.
	return decodeSlow(body, opts)
}

// decodeSlow decodes one message with encoding/json.
func decodeSlow(body []byte, opts DecodeOptions) (*Event, error) {
	var w wireEvent
	if err := unmarshal(body, &w); err != nil {
		return nil, err
	}
	return decodeWire(&w, opts, time.Time{}, nil)
}

// DecodeBatch parses and validates a /v1/batch body. It fails as a whole, with
// the index of the first bad message in the error, so that a client never
// has half a batch accepted without knowing which half.
func DecodeBatch(body []byte, opts DecodeOptions) ([]*Event, error) {
	if len(body) > MaxBatchBytes {
		return nil, fmt.Errorf("batch is %d bytes, limit %d: %w", len(body), MaxBatchBytes, ErrTooLarge)
	}
	if events, ok := decodeBatchFast(body, opts); ok {
		return events, nil
	}
	return decodeBatchSlow(body, opts)
}

// decodeBatchSlow decodes a batch with encoding/json: what the fast path
// does not take, and every error.
func decodeBatchSlow(body []byte, opts DecodeOptions) ([]*Event, error) {
	var w wireBatch
	if err := unmarshal(body, &w); err != nil {
		return nil, err
	}
	if isNull(w.Batch) {
		return nil, invalid("batch", "required")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(w.Batch, &raws); err != nil {
		return nil, invalid("batch", "want array, got %s", kindOfRaw(w.Batch))
	}
	if len(raws) == 0 {
		return nil, invalid("batch", "must hold at least one message")
	}
	sentAt, err := parseTime("sentAt", w.SentAt)
	if err != nil {
		return nil, err
	}
	ctx, err := parseObject("context", w.Context)
	if err != nil {
		return nil, err
	}
	events := make([]*Event, 0, len(raws))
	for i, raw := range raws {
		prefix := fmt.Sprintf("batch[%d]", i)
		if len(raw) > MaxEventBytes {
			return nil, fmt.Errorf("%s: event is %d bytes, limit %d: %w", prefix, len(raw), MaxEventBytes, ErrTooLarge)
		}
		var we wireEvent
		if err := json.Unmarshal(raw, &we); err != nil {
			return nil, invalid(prefix, "want object, got %s", kindOfRaw(raw))
		}
		ev, err := decodeWire(&we, opts, sentAt, ctx)
		if err != nil {
			return nil, within(prefix, err)
		}
		events = append(events, ev)
	}
	return events, nil
}

// decodeBatchFast decodes a valid batch in one read (wirescan.go); false
// for anything else, which DecodeBatch then decodes, and refuses, with
// encoding/json.
func decodeBatchFast(body []byte, opts DecodeOptions) ([]*Event, bool) {
	var w wireBatch
	wes, ok := scanBatch(body, &w)
	if !ok || len(wes) == 0 {
		return nil, false
	}
	sentAt, err := parseTime("sentAt", w.SentAt)
	if err != nil {
		return nil, false
	}
	ctx, err := objectField("context", w.Context, w.context)
	if err != nil {
		return nil, false
	}
	events := make([]*Event, len(wes))
	for i := range wes {
		if events[i], err = decodeWire(&wes[i], opts, sentAt, ctx); err != nil {
			return nil, false
		}
	}
	return events, true
}

// unmarshal decodes a JSON object and turns syntax errors into messages with
// a line and column.
func unmarshal(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// Offset counts the bytes read, the offending one included:
			// point at that byte, not past it.
			line, col := lineCol(body, max(se.Offset-1, 0))
			return invalid("", "invalid JSON at line %d, column %d: %s", line, col, se.Error())
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return invalid("body", "want object, got %s", te.Value)
		}
		return invalid("body", "%s", err.Error())
	}
	return nil
}

func lineCol(body []byte, offset int64) (line, col int) {
	if offset > int64(len(body)) {
		offset = int64(len(body))
	}
	before := body[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	if col < 1 {
		col = 1
	}
	return line, col
}

func decodeWire(w *wireEvent, opts DecodeOptions, batchSentAt time.Time, batchCtx map[string]any) (*Event, error) {
	e := &Event{Source: opts.Source, ReceivedAt: opts.ReceivedAt.UTC()}
	var err error
	if e.Type, err = parseString("type", w.Type, false); err != nil {
		return nil, err
	}
	switch {
	case e.Type == "" && opts.Type == "":
		return nil, invalid("type", "required in a batch: one of track, identify, page, screen, group, alias")
	case e.Type == "":
		e.Type = opts.Type
	case opts.Type != "" && e.Type != opts.Type:
		return nil, invalid("type", "is %q but the endpoint takes %q", e.Type, opts.Type)
	}
	switch e.Type {
	case TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias:
	default:
		return nil, invalid("type", "unknown type %q: want one of track, identify, page, screen, group, alias", e.Type)
	}
	if e.MessageID, err = parseString("messageId", w.MessageID, true); err != nil {
		return nil, err
	}
	if err := checkClientMessageID(e.MessageID); err != nil {
		return nil, err
	}
	if e.UserID, err = parseString("userId", w.UserID, true); err != nil {
		return nil, err
	}
	if e.AnonymousID, err = parseString("anonymousId", w.AnonymousID, true); err != nil {
		return nil, err
	}
	if e.PreviousID, err = parseString("previousId", w.PreviousID, true); err != nil {
		return nil, err
	}
	if e.GroupID, err = parseString("groupId", w.GroupID, true); err != nil {
		return nil, err
	}
	if e.Event, err = parseString("event", w.Event, false); err != nil {
		return nil, err
	}
	if e.Name, err = parseString("name", w.Name, false); err != nil {
		return nil, err
	}
	if e.Properties, err = objectField("properties", w.Properties, w.properties); err != nil {
		return nil, err
	}
	if e.Traits, err = objectField("traits", w.Traits, w.traits); err != nil {
		return nil, err
	}
	if e.Context, err = objectField("context", w.Context, w.context); err != nil {
		return nil, err
	}
	for k, v := range batchCtx {
		if e.Context == nil {
			e.Context = make(map[string]any, len(batchCtx))
		}
		if _, ok := e.Context[k]; !ok {
			e.Context[k] = v
		}
	}
	// An identify that carries its traits only in context.traits, as
	// RudderStack's browser SDK sends them, gets them as its own, so every
	// path (HTTP, simulate, the demo) sees the identify Segment would. An
	// identify with traits of its own keeps them.
	if e.Type == TypeIdentify && len(e.Traits) == 0 {
		if t, ok := e.Context["traits"].(map[string]any); ok && len(t) > 0 {
			e.Traits = maps.Clone(t)
		}
	}
	if e.OriginalTimestamp, err = parseTime("timestamp", w.Timestamp); err != nil {
		return nil, err
	}
	if e.SentAt, err = parseTime("sentAt", w.SentAt); err != nil {
		return nil, err
	}
	if e.SentAt.IsZero() {
		e.SentAt = batchSentAt
	}
	maxSkew := opts.MaxSkew
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	e.Timestamp = correctSkew(e.OriginalTimestamp, e.SentAt, e.ReceivedAt, maxSkew)

	if err := checkRequired(e); err != nil {
		return nil, err
	}
	if err := checkSpec(e); err != nil {
		return nil, err
	}
	if e.MessageID == "" && opts.NewID != nil {
		e.MessageID = opts.NewID()
	}
	return e, nil
}

// correctSkew computes the event time as Segment does: when the client says
// both when the event happened and when it sent it, the difference is applied
// to the server's receipt time, so a device with a wrong clock still produces
// the right order of events. What still lies more than maxSkew after the
// receipt is clamped to the receipt: a clock (or a client) that claims the
// far future would otherwise keep the event inside every sliding window. The
// caller keeps the time as sent in OriginalTimestamp.
func correctSkew(original, sentAt, receivedAt time.Time, maxSkew time.Duration) time.Time {
	switch {
	case original.IsZero():
		return receivedAt
	case receivedAt.IsZero():
		return original
	}
	t := original
	if !sentAt.IsZero() {
		t = receivedAt.Add(-sentAt.Sub(original))
	}
	if t.Sub(receivedAt) > maxSkew {
		return receivedAt
	}
	return t
}

func checkRequired(e *Event) error {
	switch e.Type {
	case TypeAlias:
		if strings.TrimSpace(e.UserID) == "" {
			return invalid("userId", "required for alias")
		}
		if strings.TrimSpace(e.PreviousID) == "" {
			return invalid("previousId", "required for alias")
		}
		return nil
	case TypeTrack:
		if strings.TrimSpace(e.Event) == "" {
			return invalid("event", "required for track: the name of the action, such as \"Order Completed\"")
		}
	case TypeGroup:
		if e.GroupID == "" {
			return invalid("groupId", "required for group")
		}
	}
	// Ids are trimmed when resolved; a blank one would make a profile no
	// identifier can find.
	if strings.TrimSpace(e.UserID) == "" && strings.TrimSpace(e.AnonymousID) == "" {
		return invalid("userId", "userId or anonymousId is required")
	}
	return nil
}

// specNumbers are properties that Segment's e-commerce spec types as numbers;
// computed traits sum them, so a string there is refused at the door.
var specNumbers = [...]string{"revenue", "total", "subtotal", "value", "price", "quantity", "discount", "tax", "shipping"}

func checkSpec(e *Event) error {
	for _, k := range specNumbers {
		if v, ok := e.Properties[k]; ok && v != nil {
			n, isNum := v.(json.Number)
			if !isNum {
				return invalid("properties."+k, "want number, got %s", KindOf(v))
			}
			if !finite(n) {
				return invalid("properties."+k, "number %s is out of range", n)
			}
		}
	}
	if v, ok := e.Properties["products"]; ok && v != nil {
		if _, isArr := v.([]any); !isArr {
			return invalid("properties.products", "want array, got %s", KindOf(v))
		}
	}
	for _, k := range [...]string{"email", "phone"} {
		if v, ok := e.Traits[k]; ok && v != nil {
			if _, isStr := v.(string); !isStr {
				return invalid("traits."+k, "want string, got %s", KindOf(v))
			}
		}
	}
	if v, ok := e.Traits["consent"]; ok && v != nil {
		if err := checkConsentShape(v); err != nil {
			return within("traits.consent", err)
		}
	}
	if e.Type == TypeTrack && e.Event == EventConsentUpdated {
		// The properties are the consent object: purposes are top-level.
		if err := checkConsentShape(e.Properties); err != nil {
			return within("properties", err)
		}
	}
	return nil
}

// checkConsentShape checks a consent object; fields in its errors are
// relative to the object.
// finite reports whether a JSON number fits a float64.
func finite(n json.Number) bool {
	f, err := n.Float64()
	return err == nil && !math.IsInf(f, 0)
}

func checkConsentShape(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return invalid("", "want object of booleans such as {\"email\": true}, got %s", KindOf(v))
	}
	for k, b := range m {
		if _, ok := b.(bool); !ok && !isConsentMeta(k) {
			return invalid(k, "want boolean, got %s", KindOf(b))
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// parseString reads a string field; idLike fields also take numbers, which
// some SDKs send for user ids, and keep their exact digits.
func parseString(field string, raw json.RawMessage, idLike bool) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		if s, ok := quickString(raw); ok {
			return s, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", invalid(field, "invalid string: %v", err)
		}
		return s, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if idLike {
			return string(raw), nil
		}
	}
	return "", invalid(field, "want string, got %s", kindOfRaw(raw))
}

// objectField is the object the scan decoded, else raw's.
func objectField(field string, raw json.RawMessage, decoded map[string]any) (map[string]any, error) {
	if decoded != nil {
		return decoded, nil
	}
	return parseObject(field, raw)
}

func parseObject(field string, raw json.RawMessage) (map[string]any, error) {
	if isNull(raw) {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, invalid(field, "want object, got %s", kindOfRaw(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, invalid(field, "invalid object: %v", err)
	}
	return m, nil
}

var timeLayouts = [...]string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999", "2006-01-02"}

func parseTime(field string, raw json.RawMessage) (time.Time, error) {
	if isNull(raw) {
		return time.Time{}, nil
	}
	if raw[0] != '"' {
		return time.Time{}, invalid(field, "want ISO-8601 time string, got %s", kindOfRaw(raw))
	}
	s, ok := quickString(raw)
	if !ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, invalid(field, "invalid string: %v", err)
		}
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			if t = t.UTC(); t.Before(minEventTime) || !t.Before(maxEventTime) {
				return time.Time{}, invalid(field, "want a time from %s to before %s, got %q",
					minEventTime.Format(time.DateOnly), maxEventTime.Format(time.DateOnly), s)
			}
			return t, nil
		}
	}
	return time.Time{}, invalid(field, "want ISO-8601 time such as 2026-11-24T10:00:00Z, got %q", s)
}

// KindOf names the JSON type of a decoded value, for error messages.
func KindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number, float64, int, int64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func kindOfRaw(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}
