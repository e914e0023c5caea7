package wallet_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/wallet"
	"cartera/wallet/apns"
)

func stats(t *testing.T, h *harness) wallet.Stats {
	t.Helper()
	st, err := h.svc.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStatsFollowPassesDevicesAndPushes: the counters move as passes are
// issued, change tier and are voided, devices come and go, and pushes go
// out or fail.
func TestStatsFollowPassesDevicesAndPushes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, p1 := h.issue("u1")
	u2 := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "u2"})
	if _, _, err := h.svc.Issue(ctx, u2, ""); err != nil {
		t.Fatal(err)
	}
	if got := stats(t, h).Passes; !slices.Equal(got, []wallet.PassCount{{Template: "loyalty", Tier: "silver", Live: 2}}) {
		t.Errorf("after two issues: %+v", got)
	}
	h.order("u1", 3, 10) // gold
	if got := stats(t, h).Passes; !slices.Equal(got, []wallet.PassCount{{Template: "loyalty", Tier: "gold", Live: 1}, {Template: "loyalty", Tier: "silver", Live: 1}}) {
		t.Errorf("after u1 turned gold: %+v", got)
	}
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "u2"}, false); err != nil {
		t.Fatal(err)
	}
	if got := stats(t, h).Passes; !slices.Equal(got, []wallet.PassCount{{Template: "loyalty", Tier: "gold", Live: 1}, {Template: "loyalty", Tier: "silver", Voided: 1}}) {
		t.Errorf("after u2's erasure: %+v", got)
	}

	ptid := h.chain.PassTypeID
	for _, d := range []string{"d1", "d2", "d3"} {
		if _, err := h.svc.Register(ctx, d, ptid, p1.Serial, p1.Token, fmt.Sprintf("%x", d)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.svc.Register(ctx, "d1", ptid, p1.Serial, p1.Token, fmt.Sprintf("%x", "d1")); err != nil { // again
		t.Fatal(err)
	}
	if err := h.svc.Unregister(ctx, "d3", ptid, p1.Serial, p1.Token); err != nil {
		t.Fatal(err)
	}
	if n := stats(t, h).Devices; n != 2 {
		t.Errorf("devices %d, want 2", n)
	}
	h.queue.take()
	h.order("u1", 1, 10)
	fake := &pusher{answer: map[string]apns.Result{fmt.Sprintf("%x", "d2"): {Status: 410, Reason: "Unregistered", Err: errors.New("410")}}}
	h.svc.NewUpdates(fake, nil).Deliver(ctx, h.queue.take())
	h.order("u1", 1, 10)
	fake = &pusher{answer: map[string]apns.Result{fmt.Sprintf("%x", "d1"): {Status: 503, Err: errors.New("503")}}}
	h.svc.NewUpdates(fake, nil).Deliver(ctx, h.queue.take())
	st := stats(t, h)
	want := []wallet.PushCount{{"apns", wallet.PushFailed, 1}, {"apns", wallet.PushSent, 1}, {"apns", wallet.PushUnregistered, 1}}
	if !slices.Equal(st.Pushes, want) || st.Devices != 1 {
		t.Errorf("pushes %+v, devices %d; want %+v and 1 (d2 is gone)", st.Pushes, st.Devices, want)
	}

	// A file from before the counters gets its passes and devices counted
	// when the wallet opens it.
	if err := h.store.DB().Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("wallet_stats")) }); err != nil {
		t.Fatal(err)
	}
	again, err := wallet.New(h.store.DB(), h.chain, h.svc.Templates(),
		wallet.Config{PublicURL: "https://cartera.example", DefaultTemplate: "loyalty", LinkSecret: []byte("0123456789abcdef0123")}, wallet.Deps{}, wallet.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	counted, err := again.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(counted.Passes, st.Passes) || counted.Devices != 1 || len(counted.Pushes) != 0 {
		t.Errorf("counted again: %+v, want passes %+v and 1 device", counted, st.Passes)
	}
}

func TestDeviceLogKeepsTheLatest(t *testing.T) {
	h := newHarness(t)
	for i := range 250 {
		if err := h.svc.LogDevice([]string{fmt.Sprintf("line %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.svc.DeviceLog(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 || got[0].Line != "line 249" || got[199].Line != "line 50" || !got[0].At.Equal(t0) {
		t.Fatalf("device log: %d lines, newest %+v, oldest %+v", len(got), got[0], got[len(got)-1])
	}
}
