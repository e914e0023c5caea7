package wallet

// The pushes kept for each pass, for the console's person page:
//
//	wallet_pushes  serial 0x00 8-byte big-endian unix nanos 0x00 8-byte big-endian sequence → JSON PushRecord;
//	               the last pushKeep of each pass
//
// A record says when an update went out and what each platform answered;
// it holds no device id nor push token.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"cartera/wallet/apple"
)

var bucketPushes = []byte("wallet_pushes")

// pushKeep is how many push records are kept per pass.
const pushKeep = 20

// PushRecord is one update of a pass sent to the devices and platforms
// that follow it.
type PushRecord struct {
	At time.Time `json:"at"`
	// Results are what each platform answered, by outcome (PushSent,
	// PushFailed, ...), with how many devices (APNs) or objects (Google).
	Results []PushCount `json:"results"`
}

// CardField is one labelled value of a card; Key is the template's
// field key.
type CardField struct {
	Key, Label, Value string
}

// Device is a device that follows a pass. Its library id is a persistent
// id of a person's phone, so only a short hash of it is given, as events
// and logs carry it; the push token never leaves the wallet.
type Device struct {
	Hash  string
	Since time.Time
}

// Card is a pass as the phone shows it, from the pass.json the wallet
// signs (without its authentication token), with the devices that follow
// it and the newest pushes sent for it.
type Card struct {
	Serial, Template, Tier, Style string
	Organization, Description     string
	LogoText                      string
	// Background, Foreground and Label are CSS colours ("rgb(r, g, b)"),
	// empty when the template sets none.
	Background, Foreground, Label               string
	Header, Primary, Secondary, Auxiliary, Back []CardField
	// Barcode is the barcode's message and format (PKBarcodeFormatQR, ...);
	// empty for a voided pass.
	Barcode, BarcodeFormat string
	// BarcodeEncoding is the character set the phone encodes the message
	// in (iso-8859-1 unless the template sets another).
	BarcodeEncoding string
	// Logo and Strip are the template's PNG images for the pass's tier
	// (the @2x ones when there are), nil when it has none.
	Logo, Strip []byte
	Voided      bool
	// NoTemplate is true when the pass's template is no longer configured:
	// the card shows the serial only.
	NoTemplate bool
	Updated    time.Time
	Devices    []Device
	// Pushes are the newest first, at most pushKeep.
	Pushes []PushRecord
}

// Cards returns the cards of a person's passes, in one read.
func (s *Service) Cards(profileID string) ([]Card, error) {
	var out []Card
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, serial := range serialsOf(tx, profileID) {
			p, err := getPass(tx, serial)
			if err != nil {
				return err
			}
			c := s.card(p)
			if c.Devices, err = devicesOf(tx, serial); err != nil {
				return err
			}
			if c.Pushes, err = pushesOf(tx, serial); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pass cards of %s: %w", profileID, err)
	}
	return out, nil
}

func (s *Service) card(p *Pass) Card {
	c := Card{Serial: p.Serial, Template: p.Template, Tier: p.Tier, Voided: p.Voided, Updated: p.Updated}
	t := s.Templates()[p.Template]
	if t == nil {
		c.NoTemplate = true
		return c
	}
	ap := t.ApplePass(p, "")
	if a := t.Assets(p.Tier); a != nil {
		c.Logo, c.Strip = firstFile(a, "logo@2x.png", "logo.png"), firstFile(a, "strip@2x.png", "strip.png")
	}
	c.Style, c.Organization, c.Description, c.LogoText = t.tier(p.Tier).Style, ap.OrganizationName, ap.Description, ap.LogoText
	c.Background, c.Foreground, c.Label = cssColor(ap.BackgroundColor), cssColor(ap.ForegroundColor), cssColor(ap.LabelColor)
	if len(ap.Barcodes) > 0 {
		c.Barcode, c.BarcodeFormat = ap.Barcodes[0].Message, cmp.Or(ap.Barcodes[0].Format, apple.DefaultBarcodeFormat)
		c.BarcodeEncoding = cmp.Or(ap.Barcodes[0].MessageEncoding, apple.DefaultBarcodeCoding)
	}
	f := fieldsOf(ap)
	if f == nil {
		return c
	}
	c.Header, c.Primary, c.Secondary = cardFields(f.HeaderFields), cardFields(f.PrimaryFields), cardFields(f.SecondaryFields)
	c.Auxiliary, c.Back = cardFields(f.AuxiliaryFields), cardFields(f.BackFields)
	return c
}

// firstFile is the first of names the assets hold, or nil.
func firstFile(a *apple.Assets, names ...string) []byte {
	for _, n := range names {
		if b := a.File(n); b != nil {
			return b
		}
	}
	return nil
}

func fieldsOf(ap apple.Pass) *apple.Fields {
	for _, f := range []*apple.Fields{ap.StoreCard, ap.EventTicket, ap.Coupon, ap.Generic} {
		if f != nil {
			return f
		}
	}
	return nil
}

func cardFields(fs []apple.Field) []CardField {
	out := make([]CardField, 0, len(fs))
	for _, f := range fs {
		v := toString(f.Value)
		if v == "" {
			v = fmt.Sprint(f.Value)
		}
		out = append(out, CardField{Key: f.Key, Label: f.Label, Value: v})
	}
	return out
}

func cssColor(c *apple.Color) string {
	if c == nil {
		return ""
	}
	return c.String()
}

func devicesOf(tx *bbolt.Tx, serial string) ([]Device, error) {
	var out []Device
	prefix := []byte(serial + "\x00")
	c := tx.Bucket(bucketPassRegs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var r registration
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("decode registration of %s: %w", serial, err)
		}
		out = append(out, Device{Hash: deviceHash(string(k[len(prefix):])), Since: r.At})
	}
	return out, nil
}

func pushesOf(tx *bbolt.Tx, serial string) ([]PushRecord, error) {
	b := tx.Bucket(bucketPushes)
	if b == nil {
		return nil, nil
	}
	var out []PushRecord
	prefix := []byte(serial + "\x00")
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var r PushRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("decode push of %s: %w", serial, err)
		}
		out = append(out, r)
	}
	slices.Reverse(out)
	return out, nil
}

// recordPushes keeps what each pass's update got, and drops the oldest
// records of a pass beyond pushKeep.
func recordPushes(tx *bbolt.Tx, at time.Time, byPass map[string][]PushCount) error {
	b := tx.Bucket(bucketPushes)
	for serial, results := range byPass {
		v, err := json.Marshal(PushRecord{At: at.UTC(), Results: results})
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		k := make([]byte, 0, len(serial)+18)
		k = append(k, serial...)
		k = append(k, 0)
		k = binary.BigEndian.AppendUint64(k, uint64(max(at.UnixNano(), 0)))
		k = append(k, 0)
		k = binary.BigEndian.AppendUint64(k, seq)
		if err := b.Put(k, v); err != nil {
			return err
		}
		prefix := []byte(serial + "\x00")
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys[:max(len(keys)-pushKeep, 0)] {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}
