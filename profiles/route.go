package profiles

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// In a cluster whose router resolves identities in a shared index
// (profiles/jetstream's Router), the event log carries routed records: the
// router has already said which profile each is about, and the partition of
// that profile applies it.
//
//	'@' profile id (24 hex) ' ' event JSON       an event for that profile
//	'@' profile id (24 hex) ' ' 'M' merge JSON   a step of a merge across
//	                                            partitions (MergeRecord)
//	'@' profile id (24 hex) ' ' 'X' identifiers JSON '\n' event JSON
//	                                            an event for that profile,
//	                                            and those of its identifiers
//	                                            that belong to other profiles
//	                                            (a merge the router refused):
//	                                            the partition does not link
//	                                            them to this one
//	'@' profile id (24 hex) ' ' 'N' kind '\n' body
//	                                            a note of the partition's
//	                                            core about its own state
//	                                            (notes.go)
//
// A record that starts with '{' is an event as before, resolved by the
// partition's own identity graph.
const (
	routeMark   = '@'
	mergeMark   = 'M'
	foreignMark = 'X'
	routeHead   = 1 + idLen + 1
)

// RoutedRecord is the log record of body (an event's JSON, or a merge
// step) addressed to profile profileID.
func RoutedRecord(profileID string, body []byte) []byte {
	rec := make([]byte, 0, routeHead+len(body))
	rec = append(rec, routeMark)
	rec = append(rec, profileID...)
	rec = append(rec, ' ')
	return append(rec, body...)
}

// RecordRoute splits a log record into the profile it is addressed to
// ("" for a plain event record, or one whose address is not a profile
// id) and its body.
func RecordRoute(rec []byte) (profileID string, body []byte) {
	if len(rec) < routeHead || rec[0] != routeMark || rec[routeHead-1] != ' ' || !ValidProfileID(string(rec[1:routeHead-1])) {
		return "", rec
	}
	return string(rec[1 : routeHead-1]), rec[routeHead:]
}

// RoutedEvent is the body of a routed event record: the event's JSON,
// after the identifiers of it that belong to other profiles, if any.
func RoutedEvent(event []byte, foreign []Identifier) ([]byte, error) {
	if len(foreign) == 0 {
		return event, nil
	}
	v, err := json.Marshal(foreign)
	if err != nil {
		return nil, fmt.Errorf("encode identifiers: %w", err)
	}
	out := make([]byte, 0, 2+len(v)+len(event))
	out = append(out, foreignMark)
	out = append(out, v...)
	out = append(out, '\n')
	return append(out, event...), nil
}

// splitForeign splits a routed event's body into the identifiers not to
// link and the event's JSON.
func splitForeign(body []byte) ([]Identifier, []byte, error) {
	if len(body) == 0 || body[0] != foreignMark {
		return nil, body, nil
	}
	head, event, ok := bytes.Cut(body[1:], []byte{'\n'})
	if !ok {
		return nil, body, errors.New("decode routed event: no end to its identifiers")
	}
	var ids []Identifier
	if err := json.Unmarshal(head, &ids); err != nil {
		return nil, body, fmt.Errorf("decode routed event's identifiers: %w", err)
	}
	return ids, event, nil
}

// NewProfileID makes a profile id as a Store does: the creation time in
// milliseconds, then random bytes, in hex. Ids made later sort later, so
// the smaller of two ids is (to the millisecond, across clocks) the older
// profile: a cluster's router keeps that one when it merges two.
func NewProfileID(now time.Time, rand io.Reader) (string, error) {
	var b [12]byte
	ms := uint64(now.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	if _, err := io.ReadFull(rand, b[6:]); err != nil {
		return "", fmt.Errorf("make profile id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ValidProfileID reports whether s has the form of a profile id.
func ValidProfileID(s string) bool {
	if len(s) != idLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Merge steps.
const (
	// MergeOut asks the loser's partition to send the loser's state to
	// the survivor and to forward the loser's later events there.
	MergeOut = "out"
	// MergeIn carries the loser's state to the survivor's partition.
	MergeIn = "in"
)

// MergeRecord is one step of a merge of two profiles held in different
// partitions. The router appends MergeOut, addressed to the loser; the
// loser's partition answers with MergeIn, addressed to the survivor, with
// the loser's state.
type MergeRecord struct {
	Op       string `json:"op"`
	Loser    string `json:"loser"`
	Survivor string `json:"survivor"`
	// State is the loser's state (MergeIn).
	State *ProfileState `json:"state,omitempty"`
}

// ProfileState is everything a store keeps under one profile id: its
// record, its sidecars (the messageIds that make a retry a no-op among
// them) and its events.
type ProfileState struct {
	// Profile is the profile's stored record.
	Profile []byte `json:"profile"`
	// Sidecars maps a sidecar's name to its value.
	Sidecars map[string][]byte `json:"sidecars,omitempty"`
	// Events are the stored events, oldest first.
	Events []StoredEvent `json:"events,omitempty"`
	// Dropped is how many of the oldest events were left out to fit the
	// record in the log's largest message.
	Dropped int `json:"dropped,omitempty"`
	// Parts are what processors keep about the profile, by processor
	// (PersonMover, move.go).
	Parts map[string][]byte `json:"parts,omitempty"`
}

// StoredEvent is one stored event and its time.
type StoredEvent struct {
	At   int64  `json:"at"` // unix nanos, as in the key
	JSON []byte `json:"json"`
}

// MergeBody is the body of a routed merge record.
func MergeBody(m MergeRecord) ([]byte, error) {
	v, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode merge record: %w", err)
	}
	return append([]byte{mergeMark}, v...), nil
}

// parseMerge decodes a routed record's body if it is a merge step.
func parseMerge(body []byte) (*MergeRecord, bool, error) {
	if len(body) == 0 || body[0] != mergeMark {
		return nil, false, nil
	}
	var m MergeRecord
	if err := json.Unmarshal(body[1:], &m); err != nil {
		return nil, true, fmt.Errorf("decode merge record: %w", err)
	}
	if (m.Op != MergeOut && m.Op != MergeIn) || !ValidProfileID(m.Loser) || !ValidProfileID(m.Survivor) || m.Loser == m.Survivor {
		return nil, true, fmt.Errorf("decode merge record: op %q, loser %q, survivor %q is not a merge step", m.Op, m.Loser, m.Survivor)
	}
	if m.Op == MergeIn && m.State == nil {
		return nil, true, fmt.Errorf("decode merge record: merge of %s into %s carries no state", m.Loser, m.Survivor)
	}
	return &m, true, nil
}

// IdentifierReader reads the identifiers of events as the store's identity
// resolution does: the built-in kinds and those the config declares,
// normalized, most trusted first. A cluster's router uses it to resolve an
// event in the identity index before it is appended.
type IdentifierReader struct{ r *resolver }

// NewIdentifierReader reads identifiers as a store with config c does.
func NewIdentifierReader(c IdentityConfig) *IdentifierReader {
	return &IdentifierReader{r: newResolver(c)}
}

// Identifiers returns the normalized identifiers of e, most trusted
// first. An alias's previousId is not among them: which kind it is depends
// on the graph.
func (ir *IdentifierReader) Identifiers(e *Event) []Identifier { return ir.r.extract(e) }

// Normalize normalizes an identifier as Store.Normalize does (a kind the
// config does not know is ErrUnknownKind).
func (ir *IdentifierReader) Normalize(id Identifier) (Identifier, error) {
	return ir.r.normalizeIdentifier(id)
}

// Limit is how many identifiers of kind one profile may hold.
func (ir *IdentifierReader) Limit(kind string) int { return ir.r.limit(kind) }

// Kinds lists the identifier kinds known: the built-in ones and those the
// config declares, in order.
func (ir *IdentifierReader) Kinds() []string {
	out := make([]string, 0, len(ir.r.known))
	for k := range ir.r.known {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// EncodeRecord encodes an event as a record of the event log, as
// Store.Append does (DecodeRecord reads it back).
func EncodeRecord(e *Event) ([]byte, error) { return encodeEvent(e) }

// DecodeRecord decodes an event record's JSON (the body of a routed one)
// as the store does.
func DecodeRecord(body []byte) (*Event, error) {
	var e Event
	if err := decodeEvent(body, &e); err != nil {
		return nil, fmt.Errorf("decode event record: %w", err)
	}
	return &e, nil
}

// IsMergeBody reports whether a routed record's body is a merge step.
func IsMergeBody(body []byte) bool { return len(body) > 0 && body[0] == mergeMark }

// mergeMarker is the messageId remembered on a survivor once a loser's
// state was merged into it: a MergeIn sent again (its sender died before
// committing the MergeOut) is then a no-op.
func mergeMarker(loser string) string { return InternalIDPrefix + "merge:" + loser }
