package wallet

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
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
	v, err := json.Marshal(&p)
	if err != nil {
		return err
	}
	if err := countPass(tx, b.Get([]byte(p.Serial)), &p); err != nil {
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
