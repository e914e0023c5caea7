package channels

import (
	"cmp"
	"slices"
	"time"
)

// InFlight is a message a delivery worker has claimed and not yet settled:
// being delivered now, or waiting for one of its destination's workers.
type InFlight struct {
	// Message is a copy of the message as claimed, without its payload
	// (which may hold a person's address or the text of a message).
	Message
	// Since is when the worker claimed it.
	Since time.Time
}

// InFlight lists up to limit of the messages workers hold now, the
// longest held first. It reads the delivery workers' claims in memory
// (no bbolt read): a message is in flight from its claim until its
// outcome is committed, and the list is empty when Run is not running.
func (o *Outbox) InFlight(limit int) []InFlight {
	o.mu.Lock()
	lanes := make([]*lane, 0, len(o.lanes))
	for _, l := range o.lanes {
		lanes = append(lanes, l)
	}
	o.mu.Unlock()
	var out []InFlight
	for _, l := range lanes {
		l.mu.Lock()
		for _, m := range l.claimed {
			out = append(out, m)
		}
		l.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b InFlight) int {
		return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Seq, b.Seq))
	})
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out
}
