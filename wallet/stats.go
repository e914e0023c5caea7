package wallet

// Counters for the console's Wallet page, kept as passes, devices and
// pushes change, so that reading them never walks every pass:
//
//	wallet_stats       "pass" 0x00 template 0x00 tier 0x00 ("live" | "voided") → 8-byte big-endian count of passes
//	                   "devices" → registrations (device and pass) now
//	                   "push" 0x00 platform 0x00 outcome → pushes and patches since the counters began
//	wallet_device_log  8-byte big-endian sequence → JSON DeviceLogLine: the last deviceLogKeep lines devices sent
//	                   to POST /wallet/v1/log
//
// A file from a version without wallet_stats gets its pass and device
// counters counted once, when the wallet opens it.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

var (
	bucketStats     = []byte("wallet_stats")
	bucketDeviceLog = []byte("wallet_device_log")
)

// deviceLogKeep is how many device log lines are kept.
const deviceLogKeep = 200

// Push outcomes counted.
const (
	PushSent         = "sent"
	PushUnregistered = "unregistered"
	PushFailed       = "failed"
	PushRefused      = "refused"
)

var keyDevices = []byte("devices")

func passStatKey(template, tier string, voided bool) []byte {
	state := "live"
	if voided {
		state = "voided"
	}
	return []byte("pass\x00" + template + "\x00" + tier + "\x00" + state)
}

func addStat(b *bbolt.Bucket, k []byte, d int64) error {
	var n int64
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(max(n+d, 0)))
	return b.Put(k, v[:])
}

// countPass moves a pass's count from what it was (old, nil for a new
// pass) to what it is.
func countPass(tx *bbolt.Tx, old []byte, p *Pass) error {
	b := tx.Bucket(bucketStats)
	if old != nil {
		var was struct {
			Template, Tier string
			Voided         bool
		}
		if err := json.Unmarshal(old, &was); err != nil {
			return fmt.Errorf("decode pass %s: %w", p.Serial, err)
		}
		if was.Template == p.Template && was.Tier == p.Tier && was.Voided == p.Voided {
			return nil
		}
		if err := addStat(b, passStatKey(was.Template, was.Tier, was.Voided), -1); err != nil {
			return err
		}
	}
	return addStat(b, passStatKey(p.Template, p.Tier, p.Voided), 1)
}

// openStats makes the buckets; a file without them gets its passes and
// devices counted once.
func openStats(tx *bbolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketDeviceLog); err != nil {
		return err
	}
	if tx.Bucket(bucketStats) != nil {
		return nil
	}
	b, err := tx.CreateBucket(bucketStats)
	if err != nil {
		return err
	}
	err = tx.Bucket(bucketPasses).ForEach(func(k, v []byte) error {
		var p Pass
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode pass %s: %w", k, err)
		}
		return addStat(b, passStatKey(p.Template, p.Tier, p.Voided), 1)
	})
	if err != nil {
		return err
	}
	return addStat(b, keyDevices, int64(tx.Bucket(bucketDevices).Stats().KeyN))
}

// PassCount is the passes of one template and tier.
type PassCount struct {
	Template, Tier string
	Live, Voided   int64
}

// PushCount is the pushes (APNs) or object updates (Google) of one
// outcome.
type PushCount struct {
	Platform, Outcome string
	N                 int64
}

// Stats are the wallet's counters.
type Stats struct {
	// Passes are by template and tier, in that order; a voided pass
	// counts under the tier it had.
	Passes []PassCount
	// Devices are the registrations (a device following a pass) now.
	Devices int64
	// Pushes are by platform and outcome.
	Pushes []PushCount
}

// Stats reads the counters (a few keys; no pass is read).
func (s *Service) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketStats).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			n := int64(binary.BigEndian.Uint64(v))
			parts := strings.Split(string(k), "\x00")
			switch {
			case bytes.Equal(k, keyDevices):
				st.Devices = n
			case parts[0] == "pass" && len(parts) == 4:
				if i := len(st.Passes) - 1; i < 0 || st.Passes[i].Template != parts[1] || st.Passes[i].Tier != parts[2] {
					st.Passes = append(st.Passes, PassCount{Template: parts[1], Tier: parts[2]})
				}
				if parts[3] == "voided" {
					st.Passes[len(st.Passes)-1].Voided = n
				} else {
					st.Passes[len(st.Passes)-1].Live = n
				}
			case parts[0] == "push" && len(parts) == 3:
				st.Pushes = append(st.Pushes, PushCount{Platform: parts[1], Outcome: parts[2], N: n})
			}
			return nil
		})
	})
	if err != nil {
		return st, fmt.Errorf("read wallet stats: %w", err)
	}
	return st, nil
}

// countPushes adds to the push counters (platform → outcome → count) and
// keeps what each pass's update got (serial → outcomes), in one commit.
func (s *Service) countPushes(counts map[string]map[string]int64, byPass map[string][]PushCount) error {
	if len(counts) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := recordPushes(tx, s.now(), byPass); err != nil {
			return err
		}
		b := tx.Bucket(bucketStats)
		for platform, outcomes := range counts {
			for outcome, n := range outcomes {
				if err := addStat(b, []byte("push\x00"+platform+"\x00"+outcome), n); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count wallet pushes: %w", err)
	}
	return nil
}

// DeviceLogLine is one line a device sent to POST /wallet/v1/log.
type DeviceLogLine struct {
	At   time.Time `json:"at"`
	Line string    `json:"line"`
}

// LogDevice keeps lines devices sent, the last deviceLogKeep of them.
func (s *Service) LogDevice(lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	at := s.now().UTC()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDeviceLog)
		var seq uint64
		for _, l := range lines {
			var err error
			if seq, err = b.NextSequence(); err != nil {
				return err
			}
			v, err := json.Marshal(DeviceLogLine{At: at, Line: l})
			if err != nil {
				return err
			}
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], seq)
			if err := b.Put(k[:], v); err != nil {
				return err
			}
		}
		// Sequences are dense: the oldest kept is seq-deviceLogKeep+1.
		c := b.Cursor()
		for k, _ := c.First(); k != nil && seq > deviceLogKeep && binary.BigEndian.Uint64(k) <= seq-deviceLogKeep; k, _ = c.First() {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keep wallet device log: %w", err)
	}
	return nil
}

// DeviceLog returns up to limit of the latest device log lines, newest
// first.
func (s *Service) DeviceLog(limit int) ([]DeviceLogLine, error) {
	var out []DeviceLogLine
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketDeviceLog).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var l DeviceLogLine
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("decode device log line %x: %w", k, err)
			}
			out = append(out, l)
		}
		return nil
	})
	return out, err
}
