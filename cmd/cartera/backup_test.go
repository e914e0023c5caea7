package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

func TestBackup(t *testing.T) {
	t.Parallel()
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

// TestBackupStalledClientDoesNotHoldWrites: a backup client that reads
// nothing for a while must not hold the database. Writes that grow the file
// past its mapping wait for every open read transaction; the download is
// served from a snapshot on local disk, so they go on, and the client
// still gets the whole, valid file when it reads at last.
func TestBackupStalledClientDoesNotHoldWrites(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	// Events of ~20 KB, 20 to a batch: each batch adds ~400 KB to the file.
	pad := strings.Repeat("x", 20<<10)
	ingest := func(from, batches int) {
		t.Helper()
		for b := range batches {
			var evs []string
			for i := range 20 {
				evs = append(evs, fmt.Sprintf(`{"type":"track","userId":"u-%d","event":"Product Viewed","properties":{"pad":%q}}`, (from+b)*20+i, pad))
			}
			mustOK(t, s.send(t, "web_dev_write_key", "/v1/batch", `{"batch":[`+strings.Join(evs, ",")+`]}`))
		}
	}
	// A file larger than what the socket buffers between the server and a
	// client that reads nothing can hold.
	ingest(0, 20)

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := http.NewRequest("GET", s.base+"/v1/admin/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	// One byte read: the handler has started the download. Then the client
	// stalls while the file grows to about three times its size, past its
	// current mapping.
	br := bufio.NewReaderSize(conn, 16)
	if _, err := br.Peek(1); err != nil {
		t.Fatalf("backup response: %v", err)
	}
	ingest(20, 40)

	resp, err := http.ReadResponse(bufio.NewReaderSize(br, 64<<10), req)
	if err != nil {
		t.Fatalf("backup response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the stalled backup after the writes: %v (got %d of %d bytes)", err, len(body), resp.ContentLength)
	}
	if resp.StatusCode != 200 || int64(len(body)) != resp.ContentLength {
		t.Fatalf("status %d, %d bytes of Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer db.Close()
	if err := db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("check the backup: %v", err)
	}
	// The snapshot is gone from the data folder once sent.
	entries, err := os.ReadDir(filepath.Dir(s.data))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "backup") {
			t.Errorf("left in the data folder after the download: %s", e.Name())
		}
	}
}

// What backups a crash cut off left beside the data file goes at start:
// serve's snapshots and a node's folders and tars, nothing else.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "cartera.db")
	for _, name := range []string{"cartera.db", ".backup-123.db", ".backup-cluster-9.tar", "keep.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, ".backup-cluster-7", "1-OBJ"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{backupPattern, clusterBackupPattern} {
		if err := removeStale(data, pattern); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "cartera.db keep.txt" {
		t.Fatalf("left %v, want the data file and keep.txt", left)
	}
}
