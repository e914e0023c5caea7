package wallet_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/wallet"
	"cartera/wallet/apns"
)

// TestCardsShowPassDevicesAndPushes: a person's card has what pass.json
// shows (tier colours, fields by group with their labels, the barcode),
// the devices that follow it by hash only, and its pushes newest first,
// the last 20.
func TestCardsShowPassDevicesAndPushes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.order("u1", 3, 40) // gold, 120 points
	id, p := h.issue("u1")
	registered := h.clock.Now()
	ptid := h.chain.PassTypeID
	for _, d := range []string{"device-one", "device-two"} {
		if _, err := h.svc.Register(ctx, d, ptid, p.Serial, p.Token, fmt.Sprintf("%x", d)); err != nil {
			t.Fatal(err)
		}
	}
	cards, err := h.svc.Cards(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(cards) != 1 {
		t.Fatalf("%d cards, want 1", len(cards))
	}
	c := cards[0]
	if c.Serial != p.Serial || c.Tier != "gold" || c.Style != "storeCard" || c.Organization != "Cartera Shoes" || c.Background != "rgb(176, 128, 20)" {
		t.Errorf("card %+v", c)
	}
	if want := []wallet.CardField{{Key: "points", Label: "POINTS", Value: "120"}}; !slices.Equal(c.Header, want) {
		t.Errorf("header %+v, want %+v", c.Header, want)
	}
	if want := []wallet.CardField{{Key: "tier", Label: "TIER", Value: "Gold"}}; !slices.Equal(c.Primary, want) {
		t.Errorf("primary %+v, want %+v", c.Primary, want)
	}
	// The tier's images: gold has a strip of its own, the logo is shared.
	if string(c.Strip) != "\x89PNG gold strip" || string(c.Logo) != "\x89PNG logo" {
		t.Errorf("images: strip %q, logo %q", c.Strip, c.Logo)
	}
	if c.Barcode != "40001234" || c.BarcodeFormat != "PKBarcodeFormatQR" || c.BarcodeEncoding != "iso-8859-1" {
		t.Errorf("barcode %q %q %q", c.Barcode, c.BarcodeFormat, c.BarcodeEncoding)
	}
	if len(c.Devices) != 2 || len(c.Pushes) != 0 {
		t.Fatalf("devices %+v, pushes %+v", c.Devices, c.Pushes)
	}
	for _, d := range c.Devices {
		if len(d.Hash) != 16 || strings.Contains(d.Hash, "device") || !d.Since.Equal(registered) {
			t.Errorf("device %+v: want a 16-hex hash and its registration time", d)
		}
	}

	// One push reaches device-one, device-two is gone; a later one fails.
	h.queue.take()
	h.order("u1", 1, 10)
	h.clock.Advance(time.Minute)
	first := h.clock.Now()
	fake := &pusher{answer: map[string]apns.Result{fmt.Sprintf("%x", "device-two"): {Status: 410, Reason: "Unregistered", Err: errors.New("410")}}}
	h.svc.NewUpdates(fake, nil).Deliver(ctx, h.queue.take())
	h.order("u1", 1, 10)
	h.clock.Advance(time.Minute)
	second := h.clock.Now()
	fake = &pusher{answer: map[string]apns.Result{fmt.Sprintf("%x", "device-one"): {Status: 503, Err: errors.New("503")}}}
	h.svc.NewUpdates(fake, nil).Deliver(ctx, h.queue.take())
	if cards, err = h.svc.Cards(id); err != nil {
		t.Fatal(err)
	}
	c = cards[0]
	if len(c.Devices) != 1 {
		t.Errorf("devices after device-two's 410: %+v", c.Devices)
	}
	want := []wallet.PushRecord{
		{At: second, Results: []wallet.PushCount{{Platform: "apns", Outcome: wallet.PushFailed, N: 1}}},
		{At: first, Results: []wallet.PushCount{{Platform: "apns", Outcome: wallet.PushSent, N: 1}, {Platform: "apns", Outcome: wallet.PushUnregistered, N: 1}}},
	}
	if len(c.Pushes) != 2 {
		t.Fatalf("pushes %+v, want %+v", c.Pushes, want)
	}
	for i := range want {
		got := c.Pushes[i]
		slices.SortFunc(got.Results, func(a, b wallet.PushCount) int { return strings.Compare(a.Outcome, b.Outcome) })
		if !got.At.Equal(want[i].At) || !slices.Equal(got.Results, want[i].Results) {
			t.Errorf("push %d: %+v, want %+v", i, got, want[i])
		}
	}

	// Only the last 20 are kept.
	var last time.Time
	for range 25 {
		h.order("u1", 1, 10)
		h.clock.Advance(time.Second)
		last = h.clock.Now()
		h.svc.NewUpdates(&pusher{}, nil).Deliver(ctx, h.queue.take())
	}
	if cards, err = h.svc.Cards(id); err != nil {
		t.Fatal(err)
	}
	if n := len(cards[0].Pushes); n != 20 || !cards[0].Pushes[0].At.Equal(last) {
		t.Errorf("%d pushes kept, newest at %v; want 20, the newest at %v", n, cards[0].Pushes[0].At, last)
	}
}
