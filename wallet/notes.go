package wallet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// On a cluster node the wallet lives in a partition's file, and a new
// owner of the partition restores its last snapshot and replays the
// stream after it. A pass issued and a device registered through the web
// service after that snapshot are in neither: the person's phone would
// hold a pass its new owner does not know (every request about it 401),
// and a device would get no more pushes. So each is noted in the
// partition's stream (Deps.Noter) before it is answered, and every owner
// applies the notes (ApplyNote) in the partition's order.

// Kinds of the wallet's notes (profiles.Store.Note).
const (
	NotePass   = "wallet.pass"
	NoteDevice = "wallet.device"
)

// Noter keeps a note where the next owner of the wallet's partition finds
// it (profiles.Store.Note): false when nothing was kept (no partition, the
// file is the record).
type Noter func(ctx context.Context, profileID, kind string, body []byte) (bool, error)

// deviceNote is a device's registration for a pass, or its removal.
type deviceNote struct {
	Device     string       `json:"device"`
	PassTypeID string       `json:"pass_type_id"`
	Serial     string       `json:"serial"`
	Reg        registration `json:"reg"`
	Removed    bool         `json:"removed,omitempty"`
}

// note keeps v as a note of kind about profileID's partition.
func (s *Service) note(ctx context.Context, profileID, kind string, v any) error {
	if s.deps.Noter == nil || profileID == "" {
		return nil
	}
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s note: %w", kind, err)
	}
	if _, err := s.deps.Noter(ctx, profileID, kind, body); err != nil {
		return fmt.Errorf("keep %s note: %w", kind, err)
	}
	return nil
}

// ApplyNote returns the handler of the wallet's notes of kind, to apply
// within the store's transaction.
func (s *Service) ApplyNote(kind string) func(tx *bbolt.Tx, body []byte) error {
	switch kind {
	case NotePass:
		return applyPassNote
	case NoteDevice:
		return applyDeviceNote
	}
	return func(*bbolt.Tx, []byte) error { return fmt.Errorf("wallet: no notes of kind %q", kind) }
}

// applyPassNote keeps a pass issued elsewhere unless the file has it at
// that tag or later; the tag counter moves past its tag.
func applyPassNote(tx *bbolt.Tx, body []byte) error {
	var p Pass
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("decode pass note: %w", err)
	}
	return keepPass(tx, &p)
}

// keepPass keeps p, issued in another file, unless this file has it at
// that tag or later; the tag counter moves past its tag.
func keepPass(tx *bbolt.Tx, p *Pass) error {
	if p.Serial == "" || p.ProfileID == "" {
		return fmt.Errorf("pass note: serial %q, profile %q", p.Serial, p.ProfileID)
	}
	b := tx.Bucket(bucketPasses)
	if old, err := getPass(tx, p.Serial); err == nil && old.Tag >= p.Tag {
		return nil
	}
	if b.Sequence() < p.Tag {
		if err := b.SetSequence(p.Tag); err != nil {
			return err
		}
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := countPass(tx, b.Get([]byte(p.Serial)), p); err != nil {
		return err
	}
	if err := b.Put([]byte(p.Serial), v); err != nil {
		return err
	}
	return tx.Bucket(bucketByProfile).Put(profileKey(p.ProfileID, p.Serial), nil)
}

// applyDeviceNote keeps a device's registration (or its removal) made
// elsewhere; the registration counter moves past its number.
func applyDeviceNote(tx *bbolt.Tx, body []byte) error {
	var n deviceNote
	if err := json.Unmarshal(body, &n); err != nil {
		return fmt.Errorf("decode device note: %w", err)
	}
	return keepDevice(tx, n)
}

// keepDevice keeps a device's registration (or its removal) made in
// another file; the registration counter moves past its number.
func keepDevice(tx *bbolt.Tx, n deviceNote) error {
	if n.Removed {
		_, err := deleteRegistration(tx, n.Device, n.PassTypeID, n.Serial)
		return err
	}
	devs := tx.Bucket(bucketDevices)
	if devs.Sequence() < n.Reg.Seq {
		if err := devs.SetSequence(n.Reg.Seq); err != nil {
			return err
		}
	}
	_, err := putRegistration(tx, n.Device, n.PassTypeID, n.Serial, n.Reg)
	return err
}

// putRegistration stores reg of device for a pass (and counts the device
// if it is new to the pass); created says it was.
func putRegistration(tx *bbolt.Tx, device, passTypeID, serial string, reg registration) (created bool, err error) {
	devs := tx.Bucket(bucketDevices)
	k := deviceKey(device, passTypeID, serial)
	if devs.Get(k) == nil {
		created = true
		if err := addStat(tx.Bucket(bucketStats), keyDevices, 1); err != nil {
			return false, err
		}
	}
	v, err := json.Marshal(reg)
	if err != nil {
		return false, err
	}
	if err := devs.Put(k, v); err != nil {
		return false, err
	}
	return created, tx.Bucket(bucketPassRegs).Put(passRegKey(serial, device), v)
}

// deleteRegistration removes device's registration for a pass, if there
// is one, and returns it.
func deleteRegistration(tx *bbolt.Tx, device, passTypeID, serial string) (*registration, error) {
	devs := tx.Bucket(bucketDevices)
	k := deviceKey(device, passTypeID, serial)
	v := devs.Get(k)
	if v == nil {
		return nil, nil
	}
	var reg registration
	if err := json.Unmarshal(v, &reg); err != nil {
		return nil, err
	}
	if err := devs.Delete(k); err != nil {
		return nil, err
	}
	if err := addStat(tx.Bucket(bucketStats), keyDevices, -1); err != nil {
		return nil, err
	}
	return &reg, tx.Bucket(bucketPassRegs).Delete(passRegKey(serial, device))
}

// newRegistration is a new registration of a push token, numbered.
func (s *Service) newRegistration(tx *bbolt.Tx, pushToken string) (registration, error) {
	seq, err := tx.Bucket(bucketDevices).NextSequence()
	if err != nil {
		return registration{}, err
	}
	return registration{PushToken: pushToken, At: s.now().UTC(), Seq: seq}, nil
}

// A person's passes and their devices' registrations move with them to
// another partition (a merge across partitions, profiles' move.go): the
// serials stay (they name the person's first profile, which the cluster's
// identity index maps to where they are now), and so do the tokens and
// tags the phones know.

// movedPasses is the wallet's part of a moved person's state.
type movedPasses struct {
	Passes []json.RawMessage `json:"passes"`
	// Devices are the registrations of the passes.
	Devices []deviceNote `json:"devices,omitempty"`
}

// MoveName implements profiles.PersonMover.
func (s *Service) MoveName() string { return "wallet" }

// ExportPerson implements profiles.PersonMover.
func (s *Service) ExportPerson(tx *bbolt.Tx, profileID string) ([]byte, error) {
	var out movedPasses
	for _, serial := range serialsOf(tx, profileID) {
		v := tx.Bucket(bucketPasses).Get([]byte(serial))
		if v == nil {
			continue
		}
		out.Passes = append(out.Passes, bytes.Clone(v))
		prefix := []byte(serial + "\x00")
		c := tx.Bucket(bucketPassRegs).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var reg registration
			if err := json.Unmarshal(v, &reg); err != nil {
				return nil, fmt.Errorf("decode a registration of pass %s: %w", serial, err)
			}
			out.Devices = append(out.Devices, deviceNote{Device: string(k[len(prefix):]), PassTypeID: s.chain.PassTypeID, Serial: serial, Reg: reg})
		}
	}
	if out.Passes == nil {
		return nil, nil
	}
	return json.Marshal(out)
}

// ImportPerson implements profiles.TxPersonMover.
func (w *txWork) ImportPerson(profileID string, state []byte) error {
	var mp movedPasses
	if err := json.Unmarshal(state, &mp); err != nil {
		return fmt.Errorf("decode a moved person's passes: %w", err)
	}
	for _, v := range mp.Passes {
		var p Pass
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode a moved pass: %w", err)
		}
		p.ProfileID = profileID
		if err := keepPass(w.tx, &p); err != nil {
			return err
		}
	}
	for _, d := range mp.Devices {
		if err := keepDevice(w.tx, d); err != nil {
			return err
		}
	}
	return nil
}

// MovedOut implements profiles.TxPersonMover: the person's passes and
// their registrations leave this file, uncounted, with no void and no
// push.
func (w *txWork) MovedOut(profileID string) error {
	delete(w.changed, profileID)
	passes := w.tx.Bucket(bucketPasses)
	for _, serial := range serialsOf(w.tx, profileID) {
		if v := passes.Get([]byte(serial)); v != nil {
			var was Pass
			if err := json.Unmarshal(v, &was); err != nil {
				return fmt.Errorf("decode pass %s: %w", serial, err)
			}
			if err := addStat(w.tx.Bucket(bucketStats), passStatKey(was.Template, was.Tier, was.Voided), -1); err != nil {
				return err
			}
			if err := passes.Delete([]byte(serial)); err != nil {
				return err
			}
		}
		prefix := []byte(serial + "\x00")
		var devices []string
		c := w.tx.Bucket(bucketPassRegs).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			devices = append(devices, string(k[len(prefix):]))
		}
		for _, d := range devices {
			if _, err := deleteRegistration(w.tx, d, w.s.chain.PassTypeID, serial); err != nil {
				return err
			}
		}
		if err := w.tx.Bucket(bucketByProfile).Delete(profileKey(profileID, serial)); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ profiles.PersonMover   = (*Service)(nil)
	_ profiles.TxPersonMover = (*txWork)(nil)
)
