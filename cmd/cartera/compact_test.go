package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// After an erasure, and again after `cartera compact`, no byte of the person's email
// or phone is left anywhere in the bbolt file; everyone else's data is.
func TestCompactLeavesNoTraceOfAnErasure(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "cartera.db")
	const email, phone = "erin.gone@example.com", "+34611222333"
	t.Run("serve", func(t *testing.T) {
		s := startServerAt(t, data, nil)
		mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"erin","traits":{"email":"`+email+`","phone":"+34 611 222 333","first_name":"Erin","consent":{"email":true,"ads":true}}}`))
		mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"erin","event":"Product Added","properties":{"cart_id":"e1"}}`))
		mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"kept","traits":{"email":"kept@example.com"}}`))
		r := s.admin(t, "DELETE", "/v1/profiles/email:"+email)
		if r.status != 200 {
			t.Fatalf("erase: %d %s", r.status, r.raw)
		}
		if er, _ := r.body["erased"].(map[string]any); er["scrubbed"] != true {
			t.Errorf("the erasure did not scrub the file's free pages: %s", r.raw)
		}
		// While the gateway still serves, the erased person's bytes are
		// gone from the file, freed pages included.
		raw, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{email, phone, "611222333", "erin.gone"} {
			if n := bytes.Count(raw, []byte(secret)); n > 0 {
				t.Errorf("after the erasure the file still holds %q %d times", secret, n)
			}
		}
		if !bytes.Contains(raw, []byte("kept@example.com")) {
			t.Errorf("the scrub lost a person who was not erased")
		}
	})

	var out, errb strings.Builder
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: envOf(nil)}
	if err := m.Run(context.Background(), []string{"compact", "--data", data}); err != nil {
		t.Fatalf("compact: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "compacted "+data) {
		t.Errorf("compact printed %q", out.String())
	}
	raw, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{email, phone, "611222333", "erin.gone"} {
		if n := bytes.Count(raw, []byte(secret)); n > 0 {
			t.Errorf("after compact the file still holds %q %d times", secret, n)
		}
	}
	if !bytes.Contains(raw, []byte("kept@example.com")) {
		t.Errorf("compact lost a person who was not erased")
	}
	t.Run("serve again", func(t *testing.T) {
		s := startServerAt(t, data, nil)
		if r := s.admin(t, "GET", "/v1/profiles/user_id:kept"); r.status != 200 {
			t.Errorf("the kept person after compact: %d %s", r.status, r.raw)
		}
		if r := s.admin(t, "GET", "/v1/profiles/email:"+email); r.status != 404 {
			t.Errorf("the erased person after compact: %d %s", r.status, r.raw)
		}
	})
}

// compact refuses a file a running gateway holds.
func TestCompactRefusesAFileInUse(t *testing.T) {
	data := filepath.Join(t.TempDir(), "cartera.db")
	db, err := bbolt.Open(data, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(nil)}
	if err := m.Run(context.Background(), []string{"compact", "--data", data}); err == nil || !strings.Contains(err.Error(), "stop cartera serve first") {
		t.Errorf("compact of a file in use: %v", err)
	}
}
