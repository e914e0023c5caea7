package webhook_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"cartera/channels/webhook"
)

func TestSignKnownVector(t *testing.T) {
	// From: printf %s '1763634900.{"a":1}' | openssl dgst -sha256 -hmac topsecret
	got := webhook.Sign([]byte("topsecret"), "1763634900", []byte(`{"a":1}`))
	want := "sha256=6ca6a97e19275f3fc6eaec5a78e5e7ca8425e2c75feed4daf2863f0f18e3df91"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("topsecret")
	now := time.Unix(1763634900, 0)
	ts := "1763634900"
	body := []byte(`{"id":"k1","type":"send"}`)
	sig := webhook.Sign(secret, ts, body)
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }

	tests := []struct {
		name      string
		secret    []byte
		timestamp string
		signature string
		body      []byte
		tolerance time.Duration
		want      error
	}{
		{"valid", secret, ts, sig, body, time.Minute, nil},
		{"valid at the edge of tolerance", secret, at(-time.Minute), webhook.Sign(secret, at(-time.Minute), body), body, time.Minute, nil},
		{"valid with default tolerance", secret, at(-4 * time.Minute), webhook.Sign(secret, at(-4*time.Minute), body), body, 0, nil},
		{"tampered body", secret, ts, sig, []byte(`{"id":"k1","type":"sent"}`), time.Minute, webhook.ErrBadSignature},
		{"body with extra byte", secret, ts, sig, append(append([]byte{}, body...), '\n'), time.Minute, webhook.ErrBadSignature},
		{"wrong secret", []byte("other"), ts, sig, body, time.Minute, webhook.ErrBadSignature},
		{"timestamp swapped, signature kept", secret, at(-time.Second), sig, body, time.Minute, webhook.ErrBadSignature},
		{"tampered signature", secret, ts, sig[:len(sig)-1] + "0", body, time.Minute, webhook.ErrBadSignature},
		{"truncated signature", secret, ts, sig[:len(sig)-2], body, time.Minute, webhook.ErrBadSignature},
		{"signature without prefix", secret, ts, sig[len("sha256="):], body, time.Minute, webhook.ErrBadSignature},
		{"signature not hex", secret, ts, "sha256=zz", body, time.Minute, webhook.ErrBadSignature},
		{"no signature", secret, ts, "", body, time.Minute, webhook.ErrBadSignature},
		{"stale", secret, at(-61 * time.Second), webhook.Sign(secret, at(-61*time.Second), body), body, time.Minute, webhook.ErrStale},
		{"stale with default tolerance", secret, at(-6 * time.Minute), webhook.Sign(secret, at(-6*time.Minute), body), body, 0, webhook.ErrStale},
		{"from the future", secret, at(2 * time.Minute), webhook.Sign(secret, at(2*time.Minute), body), body, time.Minute, webhook.ErrStale},
		{"no timestamp", secret, "", sig, body, time.Minute, webhook.ErrBadTimestamp},
		{"timestamp not a number", secret, "soon", sig, body, time.Minute, webhook.ErrBadTimestamp},
		{"timestamp with sign", secret, "+" + ts, webhook.Sign(secret, "+"+ts, body), body, time.Minute, webhook.ErrBadTimestamp},
		{"timestamp in milliseconds", secret, ts + "000", webhook.Sign(secret, ts+"000", body), body, time.Minute, webhook.ErrStale},
		{"timestamp overflowing", secret, "99999999999999999999", sig, body, time.Minute, webhook.ErrBadTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.secret, tt.timestamp, tt.signature, tt.body, now, tt.tolerance)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte("topsecret"), "1763634900", "sha256=00", []byte(`{"a":1}`))
	f.Add([]byte(""), "", "", []byte(""))
	f.Add([]byte("k"), "-1", "sha256=", []byte("x"))
	now := time.Unix(1763634900, 0)
	f.Fuzz(func(t *testing.T, secret []byte, ts, sig string, body []byte) {
		// Never panics; a signature we made for a fresh timestamp passes.
		_ = webhook.Verify(secret, ts, sig, body, now, time.Minute)
		fresh := strconv.FormatInt(now.Unix(), 10)
		if err := webhook.Verify(secret, fresh, webhook.Sign(secret, fresh, body), body, now, time.Minute); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
	})
}
