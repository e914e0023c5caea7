package journeys

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// StepCounts are the counters of one step (or of the journey, step "").
type StepCounts map[string]int64

// Counts returns a journey's counters by step: entered, waiting, sent,
// suppressed, exited, variant:<name>; the journey-wide "" step holds
// entered and converted.
func (e *Engine) Counts(journeyID string) (map[string]StepCounts, error) {
	out := map[string]StepCounts{}
	err := e.db.View(func(tx *bbolt.Tx) error {
		return eachCounter(tx.Bucket(bucketCounters).Get([]byte(journeyID)), func(name []byte, n int64) {
			step, what, ok := bytes.Cut(name, []byte{0})
			if !ok || name[0] == expMark {
				return
			}
			sc := out[string(step)]
			if sc == nil {
				sc = StepCounts{}
				out[string(step)] = sc
			}
			sc[string(what)] = n
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read counters of %s: %w", journeyID, err)
	}
	return out, nil
}

// InstanceView is a profile's journey instance as the profile API shows it.
type InstanceView struct {
	Journey   string    `json:"journey"`
	Version   string    `json:"version"`
	Key       string    `json:"key,omitempty"`
	Step      string    `json:"step"`
	EnteredAt time.Time `json:"entered_at"`
	// WaitingUntil is when the pending timer fires, if any.
	WaitingUntil time.Time `json:"waiting_until,omitzero"`
	Variant      string    `json:"variant,omitempty"`
	Converted    bool      `json:"converted"`
	Audiences    []string  `json:"audiences,omitempty"`
}

// Instances returns the live instances of a profile.
func (e *Engine) Instances(profileID string) ([]InstanceView, error) {
	var out []InstanceView
	err := e.db.View(func(tx *bbolt.Tx) error {
		r := &run{e: e, tx: tx}
		insts, err := r.activeOf(profileID)
		if err != nil {
			return err
		}
		for _, in := range insts {
			v := InstanceView{Journey: in.Journey, Version: in.Version, Key: in.Key, Step: in.Step, EnteredAt: in.EnteredAt,
				Variant: in.Variant, Converted: in.Converted, Audiences: in.Audiences}
			if len(in.Timer) == 16 {
				v.WaitingUntil = time.Unix(0, int64(binary.BigEndian.Uint64(in.Timer[:8]))).UTC()
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}
