package journeys

// History: what the journeys did and decided for one person, so that the
// console can say why a send went out or did not.
//
//	journey_history   profile id → the person's newest historyKeep entries,
//	                  oldest first: one JSON HistoryEntry a line
//
// The history is written in the transaction that did what it records, by
// Flush, in profile id order, only for the profiles the run was handed (a
// timer of a profile gone writes nothing) and never for a profile being
// erased; an erasure deletes it. A merge moves the merged-away person's
// lines to the survivor. It has a bucket of its own rather than being a
// sidecar of the profile: written after the profiles' own records, a
// sidecar key lands in the middle of leaf nodes the transaction has filled
// with the other people's records, and bbolt moves every key after it on
// each insert (this more than doubled the time to apply an event).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

var bucketHistory = []byte("journey_history")

// historyKeep is how many entries a person's history keeps.
const historyKeep = 60

// Decisions the history records besides the actions (Act*): what routed
// an instance, so that a send can be traced to the condition that led to
// it. Simulate prints none of them.
const (
	// DecisionBranch is the case a branch step took (Why: the condition).
	DecisionBranch = "branch"
	// DecisionSplit is the arm a split step assigned.
	DecisionSplit = "split"
	// DecisionWaitFor is how a wait_for step ended: the event came, or the
	// timeout.
	DecisionWaitFor = "wait_for"
)

// HistoryEntry is one thing a journey did (an action) or decided (a
// Decision*) for a person.
type HistoryEntry struct {
	At       time.Time `json:"at"`
	Journey  string    `json:"journey"`
	Instance uint64    `json:"instance"`
	Step     string    `json:"step,omitempty"`
	Action   string    `json:"action"`
	Channel  string    `json:"channel,omitempty"`
	// Detail is the action's detail (nil for a decision).
	Detail Detail `json:"detail,omitempty"`
	// Why says what decided: for a send, each policy it passed (consent,
	// quiet hours, suppressions, caps, priority); for a branch, the case
	// and its condition; for a split, the arm; for a wait_for, the event
	// or the timeout. Suppressions, delays and exits say why in their
	// detail's reason.
	Why string `json:"why,omitempty"`
}

// UnmarshalJSON reads an entry with the detail of its action's kind.
func (h *HistoryEntry) UnmarshalJSON(b []byte) error {
	type plain HistoryEntry
	var raw struct {
		plain
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*h = HistoryEntry(raw.plain)
	if len(raw.Detail) == 0 || string(raw.Detail) == "null" {
		return nil
	}
	d, err := newDetail(h.Action)
	if err != nil {
		return nil // a decision, or a kind of a later version: no detail
	}
	if err := json.Unmarshal(raw.Detail, d); err != nil {
		return fmt.Errorf("history %s: detail: %w", h.Action, err)
	}
	h.Detail = deref(d)
	return nil
}

// History returns a person's journey history, newest first, at most limit
// entries (0: all kept).
func (e *Engine) History(profileID string, limit int) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := e.db.View(func(tx *bbolt.Tx) error {
		lines := bytes.Split(bytes.TrimSuffix(tx.Bucket(bucketHistory).Get([]byte(profileID)), []byte("\n")), []byte("\n"))
		for i := len(lines) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
			if len(lines[i]) == 0 {
				continue
			}
			var h HistoryEntry
			if err := json.Unmarshal(lines[i], &h); err != nil {
				return fmt.Errorf("decode journey history of %s: %w", profileID, err)
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read journey history: %w", err)
	}
	return out, nil
}

// journal is what a run adds to the histories, written by Flush.
type journal struct {
	// trail is the history this run adds, by profile; erased are the
	// profiles being erased, which keep none.
	trail  map[string][]HistoryEntry
	erased map[string]bool
	// why is what the next action's history entry says decided it.
	why string
}

// note adds an entry to the person's history of this run.
func (r *run) note(profileID string, h HistoryEntry) {
	if r.erased[profileID] {
		return
	}
	if r.trail == nil {
		r.trail = map[string][]HistoryEntry{}
	}
	r.trail[profileID] = append(r.trail[profileID], h)
}

// decide notes a decision of an instance.
func (r *run) decide(in *Instance, step, decision, why string) {
	r.note(in.ProfileID, HistoryEntry{At: r.now.UTC(), Journey: in.Journey, Instance: in.ID, Step: step, Action: decision, Why: why})
}

// flushHistory appends this run's entries to each person's history.
func (r *run) flushHistory() error {
	if len(r.trail) == 0 {
		return nil
	}
	b := r.tx.Bucket(bucketHistory)
	for _, id := range slices.Sorted(maps.Keys(r.trail)) {
		if _, held := r.people[id]; !held || r.erased[id] {
			continue
		}
		var add []byte
		for _, h := range r.trail[id] {
			line, err := json.Marshal(h)
			if err != nil {
				return fmt.Errorf("encode journey history: %w", err)
			}
			add = append(append(add, line...), '\n')
		}
		if err := b.Put([]byte(id), keepLast(b.Get([]byte(id)), add, historyKeep)); err != nil {
			return err
		}
	}
	clear(r.trail)
	return nil
}

// keepLast joins old and add (JSON lines) and keeps the last n lines.
func keepLast(old, add []byte, n int) []byte {
	all := make([]byte, 0, len(old)+len(add))
	all = append(append(all, old...), add...)
	lines := bytes.Count(all, []byte("\n"))
	for ; lines > n; lines-- {
		all = all[bytes.IndexByte(all, '\n')+1:]
	}
	return all
}

// mergeHistoryLines moves the merged-away person's history to the
// survivor, in time order.
func (r *run) mergeHistoryLines(survivorID, loserID string) error {
	if moved := r.trail[loserID]; len(moved) > 0 {
		r.trail[survivorID] = append(r.trail[survivorID], moved...)
		delete(r.trail, loserID)
	}
	b := r.tx.Bucket(bucketHistory)
	lv := b.Get([]byte(loserID))
	if lv == nil {
		return nil
	}
	var all []HistoryEntry
	for _, v := range [][]byte{b.Get([]byte(survivorID)), lv} {
		for _, line := range bytes.Split(v, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var h HistoryEntry
			if err := json.Unmarshal(line, &h); err != nil {
				return fmt.Errorf("decode journey history: %w", err)
			}
			all = append(all, h)
		}
	}
	slices.SortStableFunc(all, func(a, b HistoryEntry) int { return a.At.Compare(b.At) })
	var out []byte
	for _, h := range all {
		line, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("encode journey history: %w", err)
		}
		out = append(append(out, line...), '\n')
	}
	if err := b.Put([]byte(survivorID), keepLast(nil, out, historyKeep)); err != nil {
		return err
	}
	return b.Delete([]byte(loserID))
}

// caseWhy says which case of a branch was taken, and on what condition.
func caseWhy(i int, c Case) string {
	if c.When == nil {
		return fmt.Sprintf("case %d, the default → %s", i+1, nextName(c.Next))
	}
	return fmt.Sprintf("case %d, when %s → %s", i+1, c.When.Source, nextName(c.Next))
}

// splitWhy says which arm of a split a person is in.
func splitWhy(s *Step, v Variant) string {
	exp := s.Experiment
	if exp == "" {
		exp = s.ID
	}
	why := fmt.Sprintf("arm %s (%d%%) of experiment %s", v.Name, v.Percent, exp)
	if v.Control {
		why += ", the control: gets nothing"
	}
	return why + " → " + nextName(v.Next)
}

func nextName(step string) string {
	if step == "" {
		return "the end"
	}
	return step
}

// sendWhy is what let a send go: the policies it passed, and whether it
// had been delayed.
func sendWhy(passed []string, since time.Time) string {
	if len(passed) == 0 {
		passed = []string{"no policy applies to the channel"}
	}
	why := strings.Join(passed, "; ")
	if !since.IsZero() {
		why = "released after a delay since " + since.UTC().Format(time.RFC3339) + "; " + why
	}
	return why
}
