package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of a webhook request.
const (
	HeaderKey       = "X-Cartera-Key"
	HeaderTimestamp = "X-Cartera-Timestamp"
	HeaderSignature = "X-Cartera-Signature"
)

// DefaultTolerance is how far a timestamp may be from the receiver's clock
// when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// ErrBadTimestamp is a timestamp header that is missing or not unix seconds.
var ErrBadTimestamp = errors.New("webhook: malformed timestamp")

// ErrStale is a timestamp further from now than the tolerance: a replay, or
// a clock far off.
var ErrStale = errors.New("webhook: timestamp outside tolerance")

// ErrBadSignature is a signature header that is missing, malformed or does
// not match the body and timestamp.
var ErrBadSignature = errors.New("webhook: signature mismatch")

// Sign returns the X-Cartera-Signature value for a timestamp (unix seconds,
// as sent) and body: "sha256=" and the hex HMAC-SHA256 of
// timestamp + "." + body under secret.
func Sign(secret []byte, timestamp string, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a request the way a receiver should: timestamp is the
// X-Cartera-Timestamp header, signature the X-Cartera-Signature header and
// body the raw bytes received. It fails with ErrBadTimestamp, ErrStale
// (more than tolerance from now, either way; tolerance <= 0 means
// DefaultTolerance) or ErrBadSignature. The comparison takes constant time.
// To rotate a secret, a receiver tries the new one, then the old.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Digits only: ParseInt would also take "+17", which signs differently
	// from what a sender meant but verifies the same.
	if timestamp == "" || len(timestamp) > 19 || strings.Trim(timestamp, "0123456789") != "" {
		return ErrBadTimestamp
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrBadSignature
	}
	if !hmac.Equal(got, mac(secret, timestamp, body)) {
		return ErrBadSignature
	}
	return nil
}
