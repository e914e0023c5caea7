package main

import (
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/channels/google"
	"cartera/channels/meta"
	"cartera/profiles"
)

// Simulate's lines for store purchases sent back to the ad platforms
// (channels.conversions): no journey sends them, so their journey and step
// are empty; the channel is "ads", the consent they need.
const (
	actConversion = "conversion"
	chanAds       = "ads"
)

// ConversionDetail is a conversion line's detail: the platform, the order
// id (the platforms' deduplication key: Meta's event_id, Google's
// transactionId), the event and its value; and for a held-back one, why.
type ConversionDetail struct {
	Currency    string  `json:"currency,omitempty"`
	Destination string  `json:"destination"`
	Event       string  `json:"event"`
	OrderID     string  `json:"order_id"`
	Reason      string  `json:"reason,omitempty"`
	Value       float64 `json:"value,omitempty"`
}

// configuredConversions are the conversion destinations cfg names, with or
// without their credentials: simulate shows what a deployment with them
// sends (secrets usually come from the environment, which simulate does
// not need).
func configuredConversions(cfg *Config) []string {
	var dests []string
	if cfg.Channels.Conversions.Meta != nil {
		dests = append(dests, meta.ConversionsName)
	}
	if cfg.Channels.Conversions.Google != nil {
		dests = append(dests, google.ConversionsName)
	}
	return dests
}

// simConversions is simulate's stand-in for the conversions processor: it
// decides as serve does, and prints instead of enqueueing. An order id is
// shown once per platform, as the outbox's key sends it once.
type simConversions struct {
	c    conversions
	sent map[string]bool // conversionKey
	emit func(simLine)
	who  func(profileID string) string
}

type simConversionsTx struct {
	s     *simConversions
	lines []simLine
	keys  []string
}

func (s *simConversions) Begin(*bbolt.Tx) profiles.TxProcessor { return &simConversionsTx{s: s} }

func (w *simConversionsTx) Event(p *profiles.Profile, ev *profiles.Event) ([]*profiles.Event, error) {
	pl, held := w.s.c.conversion(p, ev)
	if pl == nil && held == "" {
		return nil, nil
	}
	order, _ := ev.Properties["order_id"].(string)
	at := ev.Timestamp.UTC().Format(time.RFC3339)
	for _, d := range w.s.c.dests {
		key := conversionKey(order, d)
		if w.s.sent[key] || slices.Contains(w.keys, key) {
			continue
		}
		line := simLine{At: at, Profile: p.ID, Action: actConversion, Channel: chanAds}
		detail := ConversionDetail{Destination: strings.TrimPrefix(d, channels.ConversionPrefix), Event: ev.Event, OrderID: order}
		if pl != nil {
			detail.Value, detail.Currency = pl.Value, pl.Currency
			w.keys = append(w.keys, key)
		} else {
			line.Action, detail.Reason = "suppressed", held
		}
		line.Detail = detail
		w.lines = append(w.lines, line)
	}
	return nil, nil
}

func (w *simConversionsTx) Erased(*profiles.Profile) error         { return nil }
func (w *simConversionsTx) Merged(*profiles.Profile, string) error { return nil }
func (w *simConversionsTx) Flush() error                           { return nil }

// Done prints the lines of a committed transaction, after the journeys'
// actions of the same events.
func (w *simConversionsTx) Done(committed bool) {
	if !committed {
		return
	}
	for _, k := range w.keys {
		w.s.sent[k] = true
	}
	for _, l := range w.lines {
		l.Person = w.s.who(l.Profile)
		w.s.emit(l)
	}
}
