package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jsm.go"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// restoreStreams restores the streams of a cluster backup, unpacked in
// dir, into the NATS server at url with jsm.go (what `nats stream
// restore` runs), in the order of their folders' numbers.
func restoreStreams(t *testing.T, url, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		folders = append(folders, e.Name())
	}
	slices.SortFunc(folders, func(a, b string) int {
		na, _ := strconv.Atoi(strings.SplitN(a, "-", 2)[0])
		nb, _ := strconv.Atoi(strings.SplitN(b, "-", 2)[0])
		return na - nb
	})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	mgr, err := jsm.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, folder := range folders {
		_, name, _ := strings.Cut(folder, "-")
		if _, _, err := mgr.RestoreSnapshotFromDirectory(t.Context(), name, filepath.Join(dir, folder)); err != nil {
			t.Fatalf("restore stream %s: %v", name, err)
		}
	}
	return folders
}

// untar unpacks the tar in data into dir.
func untar(t *testing.T, data []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Fatalf("a backup's entry %q outside its folder", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A cluster is backed up as docs/cluster.md says: its JetStream streams,
// with NATS's tools, while ingestion pauses. After the NATS servers and
// every node's disk are lost, the streams restored into an empty server
// and a new node started on them hold every person of the backup, under
// the same profile ids, with their events; what came after the backup is
// not there; and new events find their people through the restored
// identity index.
func TestClusterBackupRestore(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	hook := newWebhookRecorder(t)
	start := func(id string, log io.Writer) *server {
		env := nodeEnv(ns.url(), id)
		env["CARTERA_LOG_LEVEL"] = "info"
		cfg := nodeConfig(t, dir, id, hook.url)
		// Snapshots soon after events, so that the backup holds some.
		appendFile(t, cfg, "  snapshot_interval: 200ms\n")
		return startServerConfig(t, filepath.Join(dir, id, "cartera.db"), cfg, env, log)
	}
	a, b := start("a", io.Discard), start("b", io.Discard)
	waitShared(t, a, b)

	const people = 16
	user := func(i int) string { return fmt.Sprintf("backup-user-%02d", i) }
	var events []string
	for i := range people {
		events = append(events,
			fmt.Sprintf(`{"type":"identify","userId":%q,"anonymousId":"backup-device-%02d","traits":{"email":"backup-%02d@example.com"},"messageId":"m-backup-id-%02d"}`, user(i), i, i, i),
			fmt.Sprintf(`{"type":"track","event":"Signed Up","userId":%q,"messageId":"m-backup-%02d"}`, user(i), i))
	}
	if r := a.send(t, "partition_test_key", "/v1/batch", `{"batch":[`+strings.Join(events, ",")+`]}`); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	ids := map[string]string{}
	for i := range people {
		u := user(i)
		waitUntil(t, u+" signed up", func() bool {
			p := b.admin(t, "GET", "/v1/profiles/user_id:"+u)
			if p.status != 200 || !strings.Contains(p.raw, "Signed Up") {
				return false
			}
			ids[u], _ = p.body["id"].(string)
			return ids[u] != ""
		})
	}

	// The stream is trimmed below the snapshots, as the nodes' retention
	// would: the people's state is then only in the snapshots.
	trimBelowSnapshots(t, ns.url())

	// The backup, through a. Meanwhile every node holds ingestion: b
	// answers 503 with Retry-After; what it acknowledged before is in the
	// backup.
	got := make(chan reply, 1)
	go func() {
		got <- a.do(t, "GET", "/v1/admin/backup", map[string]string{"Authorization": "Bearer " + testAdminToken}, nil)
	}()
	var backupReply reply
	held := 0
	var before []string // acknowledged before the hold: in the backup
	polling := true
	for i := 0; ; i++ {
		select {
		case backupReply = <-got:
		default:
		}
		if backupReply.status != 0 {
			break
		}
		if !polling {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		u := fmt.Sprintf("during-the-backup-%03d", i)
		r := b.send(t, "partition_test_key", "/v1/track", fmt.Sprintf(`{"event":"Signed Up","userId":%q,"messageId":"m-%s"}`, u, u))
		switch {
		case r.status == 503 && strings.Contains(r.raw, "backs the cluster up"):
			held++
			if r.header.Get("Retry-After") == "" {
				t.Errorf("a held ingestion without Retry-After")
			}
		case r.status == 200 && held == 0:
			before = append(before, u)
		case r.status == 200:
			polling = false // the hold is over: the streams are copied
		default:
			t.Fatalf("track during the backup: %d %s", r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d ingestions acknowledged before the hold, %d held", len(before), held)
	if backupReply.status != 200 || backupReply.header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("backup through a node: %d %s %.300s", backupReply.status, backupReply.header.Get("Content-Type"), backupReply.raw)
	}
	if held == 0 {
		t.Fatal("b never held ingestion during the backup")
	}
	if r := b.send(t, "partition_test_key", "/v1/track", `{"event":"Signed Up","userId":"after-the-backup","messageId":"m-after"}`); r.status != 200 {
		t.Fatalf("track after the backup: %d %s", r.status, r.raw)
	}
	backup := t.TempDir()
	untar(t, []byte(backupReply.raw), backup)

	// Everything is lost: the nodes and their disks, the NATS server and
	// its store.
	a.stop()
	b.stop()
	ns.stop()
	if err := os.RemoveAll(ns.dir); err != nil {
		t.Fatal(err)
	}
	ns.start()
	folders := restoreStreams(t, ns.url(), backup)
	if want := []string{"1-OBJ_CARTERA_EVENTS_SNAPSHOTS", "2-KV_CARTERA_EVENTS_IDENTITY", "3-KV_CARTERA_EVENTS_META", "4-CARTERA_EVENTS"}; !slices.Equal(folders, want) {
		t.Fatalf("the backup holds %v, want %v", folders, want)
	}

	logC := &lockedBuffer{}
	c := start("c", logC)
	waitUntil(t, "c holds every partition", func() bool { return partitionsHeld(t, c) == 8 })
	for i := range people {
		u := user(i)
		var p reply
		waitUntil(t, u+" restored", func() bool {
			p = c.admin(t, "GET", "/v1/profiles/user_id:"+u)
			return p.status == 200 && strings.Contains(p.raw, "Signed Up")
		})
		if p.body["id"] != ids[u] {
			t.Errorf("%s restored as %v, was %s", u, p.body["id"], ids[u])
		}
	}
	if !strings.Contains(logC.String(), "cluster: partition restored") {
		t.Errorf("c restored no partition from its snapshot:\n%s", logC.String())
	}
	if r := c.admin(t, "GET", "/v1/profiles/user_id:after-the-backup"); r.status != 404 {
		t.Errorf("a person from after the backup: %d %s, want 404", r.status, r.raw)
	}
	// What was acknowledged before the hold is in the backup.
	for _, u := range before {
		waitUntil(t, u+" restored", func() bool {
			return c.admin(t, "GET", "/v1/profiles/user_id:"+u).status == 200
		})
	}
	// The identity index came back: a device of the backup's finds its
	// person, in the partition that holds them.
	if r := c.send(t, "partition_test_key", "/v1/track", `{"event":"Came Back","anonymousId":"backup-device-03","messageId":"m-back"}`); r.status != 200 {
		t.Fatalf("track after the restore: %d %s", r.status, r.raw)
	}
	waitUntil(t, "the device's event in its person's profile", func() bool {
		p := c.admin(t, "GET", "/v1/profiles/user_id:"+user(3))
		return p.status == 200 && strings.Contains(p.raw, "Came Back") && p.body["id"] == ids[user(3)]
	})
}

// appendFile appends text to the file at path.
func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// trimBelowSnapshots waits until each partition's snapshot covers its
// last record in the stream, then purges each partition's records below
// it.
func trimBelowSnapshots(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), "CARTERA_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(t.Context(), "CARTERA_EVENTS_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]uint64{}
	for p := range 8 {
		m, err := stream.GetLastMsgForSubject(t.Context(), fmt.Sprintf("cartera.events.%d", p))
		if errors.Is(err, njs.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		last[p] = m.Sequence
	}
	if len(last) < 2 {
		t.Fatalf("records in %d partitions, want them spread", len(last))
	}
	waitUntil(t, "every partition's snapshot at its last record", func() bool {
		for p, seq := range last {
			info, err := obs.GetInfo(t.Context(), fmt.Sprintf("p%04d", p))
			if err != nil {
				return false
			}
			if off, _ := strconv.ParseUint(info.Metadata["offset"], 10, 64); off < seq {
				return false
			}
		}
		return true
	})
	for p, seq := range last {
		if err := stream.Purge(t.Context(), njs.WithPurgeSubject(fmt.Sprintf("cartera.events.%d", p)), njs.WithPurgeSequence(seq+1)); err != nil {
			t.Fatal(err)
		}
	}
}
