package profiles

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Source trust levels (SourceConfig.Trust).
const (
	// TrustClient is a source whose write key is public: it ships in a
	// web page or an app, so anyone may send with it.
	TrustClient = "client"
	// TrustServer is a source whose write key stays on machines the
	// business runs: the tills, the shop's backend, back-office jobs.
	TrustServer = "server"
)

// ServerOnlyEvents are the track events accepted only from server
// sources, unless a client source lists them in allow_events: they move
// money, points and tiers, so a public key must not be able to fake them.
func ServerOnlyEvents() []string { return []string{"Order Completed", "Order Refunded"} }

// Trust returns the trust of a source: TrustClient unless the config says
// server (an unknown source is a client).
func (s *Sources) Trust(source string) string {
	if s.trust[source] == TrustServer {
		return TrustServer
	}
	return TrustClient
}

// IsClient reports whether source is a configured client source (the
// store's SourceTrust). Sources the config does not name, such as the
// events Cartera records itself, are not.
func (s *Sources) IsClient(source string) bool {
	t, ok := s.trust[source]
	return ok && t == TrustClient
}

// CheckTrust checks events against their source's trust: it refuses the
// first server-only event from a client source, and checks identity
// verification (context.user_hash), marking the events that pass it
// Verified. batch says whether the events came in a batch, so the error
// names the index.
func (s *Sources) CheckTrust(source string, batch bool, events []*Event) error {
	for i, e := range events {
		err := s.verify(source, e)
		if err == nil {
			err = s.checkEvent(source, e)
		}
		if err != nil {
			if batch {
				return within(fmt.Sprintf("batch[%d]", i), err)
			}
			return err
		}
	}
	return nil
}

// verify checks context.user_hash, when present: the hex HMAC-SHA256 of
// the userId (or, without one, of traits.email trimmed and lower-cased)
// under the source's identity secret, compared in constant time.
func (s *Sources) verify(source string, e *Event) error {
	raw, ok := e.Context["user_hash"]
	if !ok || raw == nil {
		return nil
	}
	given, isStr := raw.(string)
	if !isStr {
		return invalid("context.user_hash", "want string, got %s", KindOf(raw))
	}
	secret := s.secrets[source]
	if secret == nil {
		return invalid("context.user_hash", "source %q has no identity_secret to check it with", source)
	}
	subject, field := IdentitySubject(e)
	if subject == "" {
		return invalid("context.user_hash", "needs a userId or traits.email to verify")
	}
	want := IdentityHash(secret, subject)
	got := strings.ToLower(strings.TrimSpace(given))
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return invalid("context.user_hash", "does not match the %s", field)
	}
	e.Verified = true
	return nil
}

// IdentitySubject is what identity verification signs: the trimmed userId,
// or without one the trimmed, lower-cased traits.email; field names it.
func IdentitySubject(e *Event) (subject, field string) {
	if id := strings.TrimSpace(e.UserID); id != "" {
		return id, "userId"
	}
	if email, _ := e.Traits["email"].(string); strings.TrimSpace(email) != "" {
		return strings.ToLower(strings.TrimSpace(email)), "traits.email"
	}
	return "", ""
}

// IdentityHash is the identity verification of a subject under a source's
// identity secret: hex(HMAC-SHA256(secret, subject)). The shop's backend
// computes the same (README, Security).
func IdentityHash(secret []byte, subject string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil))
}

// checkEvent refuses a server-only event from a client source.
func (s *Sources) checkEvent(source string, e *Event) error {
	if s.Trust(source) == TrustServer || e.Type != TypeTrack {
		return nil
	}
	// Names are compared loosely, so that "order completed" cannot slip
	// past into a rule written with another spelling.
	name := strings.TrimSpace(e.Event)
	restricted := slices.ContainsFunc(ServerOnlyEvents(), func(n string) bool { return strings.EqualFold(n, name) })
	if !restricted || slices.ContainsFunc(s.allowed[source], func(n string) bool { return strings.EqualFold(n, name) }) {
		return nil
	}
	return invalid("event", "%q is accepted only from server sources; source %q is a client source (sources[].allow_events to allow it)", e.Event, source)
}
