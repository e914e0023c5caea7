package wallet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/wallet/apns"
	"cartera/wallet/google"
)

// Pusher sends APNs pass update pushes (wallet/apns.Client does).
type Pusher interface {
	Push(ctx context.Context, tokens []string) []apns.Result
}

// GoogleObjects updates Google Wallet objects (wallet/google.Client does).
type GoogleObjects interface {
	PatchObject(ctx context.Context, obj google.LoyaltyObject) (google.LoyaltyObject, error)
	AddMessage(ctx context.Context, objectID string, msg google.Message) (google.LoyaltyObject, error)
}

// Updates is the outbox destination of pass updates: every device that
// follows a changed pass gets an APNs push, and the pass's Google Wallet
// object is patched. Messages for the same pass in one batch (the
// outbox's batch window) coalesce into one update.
type Updates struct {
	s      *Service
	apns   Pusher
	google GoogleObjects
	log    *slog.Logger
}

// NewUpdates returns the destination; apns or google may be nil (that
// platform is not configured).
func (s *Service) NewUpdates(apns Pusher, google GoogleObjects) *Updates {
	return &Updates{s: s, apns: apns, google: google, log: s.log}
}

// Name implements channels.Destination.
func (u *Updates) Name() string { return Destination }

// Deliver implements channels.Destination.
func (u *Updates) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	results := make([]channels.Result, len(msgs))
	type update struct {
		message string
		msgs    []int
	}
	updates := map[string]*update{}
	var order []string
	for i, m := range msgs {
		var p pushPayload
		if err := json.Unmarshal(m.Payload, &p); err != nil || p.Serial == "" {
			results[i].Err = channels.Permanent(fmt.Errorf("pass update payload: %v", err))
			continue
		}
		up := updates[p.Serial]
		if up == nil {
			up = &update{}
			updates[p.Serial] = up
			order = append(order, p.Serial)
		}
		if p.Message != "" {
			up.message = p.Message
		}
		up.msgs = append(up.msgs, i)
	}

	// One push to every device of every changed pass, concurrently.
	regs, err := u.s.registrations(order)
	if err != nil {
		for _, up := range updates {
			for _, i := range up.msgs {
				results[i].Err = err
			}
		}
		return results
	}
	failed := map[string]error{}
	pushedTo := map[string]int{}
	counts := map[string]map[string]int64{}
	byPass := map[string][]PushCount{}
	tally := func(serial, platform, outcome string) {
		if counts[platform] == nil {
			counts[platform] = map[string]int64{}
		}
		counts[platform][outcome]++
		for i, c := range byPass[serial] {
			if c.Platform == platform && c.Outcome == outcome {
				byPass[serial][i].N++
				return
			}
		}
		byPass[serial] = append(byPass[serial], PushCount{Platform: platform, Outcome: outcome, N: 1})
	}
	defer func() {
		if err := u.s.countPushes(counts, byPass); err != nil {
			u.log.Error("count wallet pushes", "err", err)
		}
	}()
	if u.apns != nil {
		var tokens []string
		var owners []deviceReg
		for _, serial := range order {
			for _, r := range regs[serial] {
				tokens = append(tokens, r.PushToken)
				owners = append(owners, r)
			}
		}
		var gone []deviceReg
		for i, res := range u.apns.Push(ctx, tokens) {
			r := owners[i]
			switch {
			case res.Err == nil:
				pushedTo[r.serial]++
				tally(r.serial, "apns", PushSent)
			case res.Unregistered():
				tally(r.serial, "apns", PushUnregistered)
				// A device id is a persistent id of a person's phone: the
				// log has its hash, as events do; the push token stays out.
				u.log.Info("wallet registration removed", "serial", r.serial, "device", deviceHash(r.device), "status", res.Status, "reason", res.Reason)
				gone = append(gone, r)
			case res.Retryable():
				failed[r.serial] = fmt.Errorf("apns push: %w", res.Err)
				tally(r.serial, "apns", PushFailed)
			default:
				tally(r.serial, "apns", PushRefused)
				u.log.Warn("apns push refused", "serial", r.serial, "status", res.Status, "reason", res.Reason)
			}
		}
		if len(gone) > 0 {
			if err := u.s.forget(gone); err != nil {
				u.log.Error("remove unregistered devices", "err", err)
			}
		}
	}
	if u.google != nil && u.s.cfg.Google.IssuerID != "" {
		for _, serial := range order {
			if err := u.patchGoogle(ctx, serial, updates[serial].message); err != nil {
				failed[serial] = err
				tally(serial, "google", PushFailed)
			} else {
				tally(serial, "google", PushSent)
			}
		}
	}
	for _, serial := range order {
		for _, i := range updates[serial].msgs {
			if err := failed[serial]; err != nil {
				results[i].Err = err
				continue
			}
			results[i].Events = []channels.Outcome{{Event: EventPassUpdated, Properties: map[string]any{"serial": serial, "devices": pushedTo[serial]}}}
		}
	}
	return results
}

// patchGoogle sends the pass's object as it is now, and the message.
func (u *Updates) patchGoogle(ctx context.Context, serial, message string) error {
	p, err := u.s.Pass(serial)
	if err != nil {
		return nil // gone: nothing to update
	}
	t, err := u.s.template(p.Template)
	if err != nil {
		return nil
	}
	obj := t.GoogleObject(u.s.cfg.Google.IssuerID, p)
	if _, err := u.google.PatchObject(ctx, obj); err != nil {
		var api *google.APIError
		if errors.As(err, &api) && api.StatusCode == http.StatusNotFound {
			return nil // never saved to a Google Wallet
		}
		return fmt.Errorf("google wallet patch: %w", err)
	}
	if message == "" || p.Voided {
		return nil
	}
	msg := google.Message{ID: fmt.Sprintf("m%d", p.Tag), Header: t.Organization, Body: message, MessageType: google.MessageTextAndNotify}
	_, err = u.google.AddMessage(ctx, obj.ID, msg)
	if errors.Is(err, google.ErrNotifyLimit) {
		msg.MessageType = google.MessageText // over Google's daily limit: shown, not pushed
		_, err = u.google.AddMessage(ctx, obj.ID, msg)
	}
	if err != nil {
		return fmt.Errorf("google wallet message: %w", err)
	}
	return nil
}

// deviceReg is one device following one pass.
type deviceReg struct {
	serial, device string
	registration
}

// registrations returns the devices of each serial.
func (s *Service) registrations(serials []string) (map[string][]deviceReg, error) {
	out := make(map[string][]deviceReg, len(serials))
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketPassRegs).Cursor()
		for _, serial := range serials {
			prefix := []byte(serial + "\x00")
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				var r registration
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				out[serial] = append(out[serial], deviceReg{serial: serial, device: string(k[len(prefix):]), registration: r})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read registrations: %w", err)
	}
	return out, nil
}

// forget removes registrations APNs says are gone, unless the device has
// registered again with another token since.
func (s *Service) forget(regs []deviceReg) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		devs, byPass := tx.Bucket(bucketDevices), tx.Bucket(bucketPassRegs)
		for _, r := range regs {
			k := passRegKey(r.serial, r.device)
			v := byPass.Get(k)
			if v == nil {
				continue
			}
			var cur registration
			if err := json.Unmarshal(v, &cur); err != nil {
				return err
			}
			if cur.PushToken != r.PushToken {
				continue
			}
			if err := byPass.Delete(k); err != nil {
				return err
			}
			if err := devs.Delete(deviceKey(r.device, s.chain.PassTypeID, r.serial)); err != nil {
				return err
			}
			if err := addStat(tx.Bucket(bucketStats), keyDevices, -1); err != nil {
				return err
			}
		}
		return nil
	})
}
