package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/profiles/jetstream"
)

// A backup through a cluster node (GET /v1/admin/backup) is a tar of the
// cluster's streams, each snapshotted through JetStream's API in the
// format `nats stream backup` writes (jetstream.Log.Backup), one folder a
// stream, numbered in the order to restore them with `nats stream
// restore`. While the streams are copied, every node holds ingestion (503
// with Retry-After), so that the identity index and the events agree: the
// node taking the backup tells them so over NATS each holdEvery, and a
// node holds while it heard so within holdStale (a node that dies in the
// middle of a backup does not hold the cluster for long). Before the copy
// begins, the node waits for the appends admitted before the hold to end
// (cluster.ack_wait bounds them).

// holdTopic is the broadcast topic of ingestion holds.
const holdTopic = "hold"

const (
	holdEvery = time.Second
	holdStale = 3 * holdEvery
	// holdRetry is the Retry-After of an ingestion refused by a hold.
	holdRetry = 2 * time.Second
)

// clusterBackupPattern names the folders and files a backup of the
// cluster is written to before its download, beside the node's data.
const clusterBackupPattern = ".backup-cluster-*"

// holdMessage is what a node backing up the cluster tells the others.
type holdMessage struct {
	Node string `json:"node"`
	Hold bool   `json:"hold"`
}

// clusterHold are the holds of ingestion the nodes heard of, by the node
// that asked, when last heard.
type clusterHold struct {
	now func() time.Time

	mu sync.Mutex
	by map[string]time.Time
}

func newClusterHold(now func() time.Time) *clusterHold {
	return &clusterHold{now: now, by: map[string]time.Time{}}
}

func (h *clusterHold) heard(data []byte) {
	var m holdMessage
	if json.Unmarshal(data, &m) != nil || m.Node == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.Hold {
		h.by[m.Node] = h.now()
	} else {
		delete(h.by, m.Node)
	}
}

// errHeld is an ingestion refused while a node backs the cluster up.
type errHeld struct{ node string }

func (e *errHeld) Error() string {
	return fmt.Sprintf("ingestion is held while node %s backs the cluster up: retry after %s", e.node, holdRetry)
}

// admit refuses any batch while a hold heard within holdStale lasts.
func (h *clusterHold) admit() error {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for node, at := range h.by {
		if now.Sub(at) < holdStale {
			return &errHeld{node: node}
		}
	}
	return nil
}

// clusterBackup takes backups of the cluster through this node, one at a
// time.
type clusterBackup struct {
	log     *jetstream.Log
	node    string
	dir     string        // where backups are written before their download
	settle  time.Duration // how long appends admitted before a hold may take
	now     func() time.Time
	logger  *slog.Logger
	running sync.Mutex
}

// serve answers GET /v1/admin/backup on a node: the cluster's streams as
// one tar, written to a file beside the node's data first.
func (b *clusterBackup) serve(c *fiber.Ctx) error {
	if !b.running.TryLock() {
		return &httpError{fiber.StatusConflict, "a backup of the cluster is being taken through this node already"}
	}
	started := b.now()
	f, size, err := b.take(c.UserContext())
	b.running.Unlock()
	if err != nil {
		return err
	}
	b.logger.Info("cluster backup taken", "bytes", size, "duration", b.now().Sub(started).String())
	c.Set(fiber.HeaderContentType, "application/x-tar")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="cartera-cluster-%s.tar"`, started.UTC().Format("20060102T150405Z")))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.SendStream(&backupStream{f: f, conn: c.Context().Conn()}, int(size))
}

// take holds ingestion across the cluster, copies the streams into a
// folder, then, the hold released, packs them into a tar file it returns
// open at its start.
func (b *clusterBackup) take(ctx context.Context) (*os.File, int64, error) {
	dir, err := os.MkdirTemp(b.dir, clusterBackupPattern)
	if err != nil {
		return nil, 0, fmt.Errorf("cluster backup: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	folders, err := b.copyHeld(ctx, dir)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.CreateTemp(b.dir, clusterBackupPattern+".tar")
	if err != nil {
		return nil, 0, fmt.Errorf("cluster backup: %w", err)
	}
	fail := func(err error) (*os.File, int64, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, 0, fmt.Errorf("cluster backup: pack the streams: %w", err)
	}
	if err := packTar(f, dir, folders); err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, size, nil
}

// copyHeld copies the streams into dir while every node holds ingestion.
func (b *clusterBackup) copyHeld(ctx context.Context, dir string) ([]string, error) {
	tell := func(hold bool) error {
		data, err := json.Marshal(holdMessage{Node: b.node, Hold: hold})
		if err != nil {
			return err
		}
		return b.log.Broadcast(holdTopic, data)
	}
	if err := tell(true); err != nil {
		return nil, fmt.Errorf("cluster backup: hold ingestion: %w", err)
	}
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(holdEvery)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if err := tell(true); err != nil {
					b.logger.Warn("cluster backup: hold ingestion", "err", err)
				}
			}
		}
	})
	defer func() {
		stop()
		wg.Wait()
		if err := tell(false); err != nil {
			b.logger.Warn("cluster backup: release ingestion (it resumes on its own)", "err", err)
		}
	}()
	select {
	case <-time.After(b.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	folders, err := b.log.Backup(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("cluster backup: %w", err)
	}
	return folders, nil
}

// packTar writes the folders under dir, with their files, to w as a tar.
func packTar(w io.Writer, dir string, folders []string) error {
	tw := tar.NewWriter(w)
	for _, folder := range folders {
		root := filepath.Join(dir, folder)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			hdr, err := tar.FileInfoHeader(info, "")
			if err != nil {
				return err
			}
			hdr.Name = filepath.ToSlash(rel)
			if d.IsDir() {
				hdr.Name += "/"
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			src, err := os.Open(path)
			if err != nil {
				return err
			}
			defer func() { _ = src.Close() }()
			_, err = io.Copy(tw, src)
			return err
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
