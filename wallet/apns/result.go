package apns

import (
	"errors"
	"net/http"
	"time"

	"github.com/sideshow/apns2"
)

// Result is the outcome of the push to one token.
type Result struct {
	// Token is the push token, as given to Push.
	Token string
	// Status is the HTTP status APNs answered with, 0 if it did not
	// answer (the connection or the TLS handshake failed, the push timed
	// out, the context ended, or the token was not sent at all).
	Status int
	// Reason is APNs' reason for a rejection, e.g. "Unregistered" or
	// "BadDeviceToken"; the apns2.Reason* constants list them.
	Reason string
	// Timestamp is, for a 410, when APNs last knew the token to be
	// invalid. A device that registered the token again after it should
	// be kept.
	Timestamp time.Time
	// Err is nil when APNs accepted the push (200). It wraps ErrRejected
	// for any other answer, ErrBadToken for a token not sent,
	// ErrNoConnection when no connection could be opened, and the
	// network or context error otherwise. It never quotes the token.
	Err error
}

// Unregistered reports whether the token will never work again: a 410, a
// token APNs calls bad or not for this pass type, or one that is not hex.
// The caller should delete the registration (see Timestamp).
func (r Result) Unregistered() bool {
	if r.Status == http.StatusGone || errors.Is(r.Err, ErrBadToken) {
		return true
	}
	switch r.Reason {
	case apns2.ReasonUnregistered, apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic:
		return true
	}
	return false
}

// Retryable reports whether the same push may succeed later: APNs did
// not answer, asked to slow down (429), or failed (5xx).
//
// No answer includes ErrNoConnection: a failed dial or TLS handshake,
// APNs refusing the certificate among them. Retrying does not fix a bad
// certificate, but nothing says the token is at fault, and the push goes
// through once the configuration is fixed; callers should alert when
// every push of a batch fails this way. Other rejections (400 BadTopic,
// 403 BadCertificate, 413) are neither retryable nor Unregistered.
func (r Result) Retryable() bool {
	switch {
	case r.Err == nil:
		return false
	case r.Status == 0:
		return !errors.Is(r.Err, ErrBadToken)
	default:
		return r.Status == http.StatusTooManyRequests || r.Status >= 500
	}
}
