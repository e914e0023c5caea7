package profiles

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// InternalIDPrefix starts the messageId of every event Cartera records
// itself (an unsubscribe, a delivery outcome, a journey's set_trait, a
// wallet registration). Decode refuses it in a client's messageId, so the
// two namespaces never meet.
const InternalIDPrefix = "cartera:"

// An internal event's messageId is the HMAC-SHA256, under a key secret to
// the store, of the natural key its maker gives (such as
// "unsubscribe:<message key>"): a repeat of the same thing is still
// recognized as a duplicate, but no client can compute the id beforehand
// and send it first onto a person's profile to make the real event a
// "duplicate" that is dropped.
//
// The key is derived from the random key generated at the store's first
// start (meta "tombstone_key"), with its own label so the two uses stay
// apart: nothing more to keep, back up or generate (which would also shift
// the ids a seeded Options.Rand gives simulate).
func internalIDKey(root []byte) []byte {
	m := hmac.New(sha256.New, root)
	m.Write([]byte("cartera/profiles/internal-message-id/v1"))
	return m.Sum(nil)
}

// internalID maps the natural key of an internal event into the internal
// namespace.
func (s *Store) internalID(natural string) string {
	m := hmac.New(sha256.New, s.msgKey)
	m.Write([]byte(natural))
	return InternalIDPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// checkClientMessageID refuses a client's messageId in the internal
// namespace.
func checkClientMessageID(id string) error {
	if strings.HasPrefix(id, InternalIDPrefix) {
		return invalid("messageId", "the prefix %q is reserved for events Cartera records itself", InternalIDPrefix)
	}
	return nil
}
