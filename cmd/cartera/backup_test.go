package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"cartera/profiles"
)

func TestBackup(t *testing.T) {
	s := startServer(t, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u-backup","traits":{"name":"Ana","email":"ana@example.com"}}`))

	t.Run("needs the admin token", func(t *testing.T) {
		r := s.do(t, "GET", "/v1/admin/backup", nil, nil)
		if r.status != 401 || r.body["success"] != false {
			t.Fatalf("status %d, body %s", r.status, r.raw)
		}
	})

	t.Run("HEAD ends the read transaction", func(t *testing.T) {
		// A leaked transaction would hang the server's Close at cleanup.
		r := s.do(t, "HEAD", "/v1/admin/backup", map[string]string{"Authorization": "Bearer " + testAdminToken}, nil)
		if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	})

	t.Run("a copy the store opens", func(t *testing.T) {
		r := s.admin(t, "GET", "/v1/admin/backup")
		if r.status != 200 {
			t.Fatalf("status %d, body %.200s", r.status, r.raw)
		}
		if got := r.header.Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("Content-Type = %q", got)
		}
		if got := r.header.Get("Content-Disposition"); !regexp.MustCompile(`^attachment; filename="cartera-\d{8}T\d{6}Z\.db"$`).MatchString(got) {
			t.Errorf("Content-Disposition = %q", got)
		}
		if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(r.raw)) {
			t.Errorf("Content-Length = %q, body is %d bytes", got, len(r.raw))
		}
		path := filepath.Join(t.TempDir(), "restored.db")
		if err := os.WriteFile(path, []byte(r.raw), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := profiles.Open(context.Background(), path, profiles.DefaultConfig(), profiles.Options{})
		if err != nil {
			t.Fatalf("open the backup: %v", err)
		}
		defer st.Close()
		p, err := st.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "u-backup"})
		if err != nil {
			t.Fatalf("lookup in the backup: %v", err)
		}
		if p.TraitValues()["name"] != "Ana" {
			t.Errorf("traits in the backup = %v", p.TraitValues())
		}
	})
}
