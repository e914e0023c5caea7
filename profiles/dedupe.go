package profiles

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A messageId is remembered on the profile the message was applied to, as
// a sidecar of that profile (sidecarMessage + messageId → receipt time):
// the commit that applies an event writes the person's page anyway, while
// a global index keyed by messageId, a random key, cost a page of its own
// per event. A retry carries the identifiers of the original, which lead
// to the same profile or, after a merge, to the survivor, which takes the
// loser's messageIds along. Erasing a profile moves its messageIds to the
// global bucket messages, so a retry after an erasure is still recognized;
// that bucket also holds the messageIds of files written by earlier
// versions. msgtime orders all of them for expiry.
//
// The name starts with '~', after every other sidecar's: a person who sends
// many events within the dedupe window has many of these, and they must not
// push the small records read and written for every event (the profile,
// rules state, journey entries) onto different pages.
const sidecarMessage = "~m\x00"

func messageKey(profileID, messageID string) []byte {
	return SidecarKey(profileID, sidecarMessage+messageID)
}

// seen reports whether a messageId was applied to any of the profiles the
// event's identifiers point at, or is remembered globally.
func (st *txState) seen(owners []string, messageID string) bool {
	for _, pid := range owners {
		if st.profiles.Get(messageKey(pid, messageID)) != nil {
			return true
		}
	}
	return st.tx.Bucket(bucketMessages).Get([]byte(messageID)) != nil
}

// remember records a messageId as applied to a profile.
func (st *txState) remember(profileID, messageID string, at int64) error {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(at))
	if err := st.profiles.Put(messageKey(profileID, messageID), ts[:]); err != nil {
		return fmt.Errorf("remember message %s: %w", messageID, err)
	}
	return st.tx.Bucket(bucketMsgTime).Put(append(ts[:], messageID...), []byte(profileID))
}

// moveMessages hands the messageIds remembered on one profile to another
// (to = "" forgets the profile: they go to the global bucket).
func (st *txState) moveMessages(from, to string) error {
	prefix := messageKey(from, "")
	type kv struct{ id, ts []byte }
	var moved []kv
	c := st.profiles.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		moved = append(moved, kv{bytes.Clone(k[len(prefix):]), bytes.Clone(v)})
	}
	msgs, byTime := st.tx.Bucket(bucketMessages), st.tx.Bucket(bucketMsgTime)
	for _, m := range moved {
		if err := st.profiles.Delete(append(bytes.Clone(prefix), m.id...)); err != nil {
			return err
		}
		var err error
		if to == "" {
			err = msgs.Put(m.id, m.ts)
		} else {
			err = st.profiles.Put(messageKey(to, string(m.id)), m.ts)
		}
		if err != nil {
			return fmt.Errorf("move message %s: %w", m.id, err)
		}
		if len(m.ts) == 8 {
			if err := byTime.Put(append(bytes.Clone(m.ts), m.id...), []byte(to)); err != nil {
				return err
			}
		}
	}
	return nil
}
