package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gofiber/fiber/v2"
	berrors "go.etcd.io/bbolt/errors"

	"cartera/profiles"
)

// backupChunkTimeout is how long one chunk of a backup download may take
// to reach the client.
const backupChunkTimeout = 30 * time.Second

// backupPattern names the snapshots a download streams from, in the data
// folder (os.CreateTemp adds a random part at the '*').
const backupPattern = ".backup-*.db"

// backup sends a consistent copy of the whole bbolt file (profiles, rules,
// journeys and outbox share it). bbolt's Tx.WriteTo copies the file as of
// one read transaction to a snapshot beside it, at disk speed; the
// transaction ends before the first byte goes out, and the snapshot is
// streamed and then removed. A slow or stalled client holds only its
// snapshot: a write that must grow the file waits for every reader, so a
// read transaction held for a download would stall ingestion.
func (a *api) backup(c *fiber.Ctx) error {
	started := a.now()
	f, size, err := a.snapshot()
	if err != nil {
		return err
	}
	a.log.Info("backup snapshot taken", "bytes", size, "duration", a.now().Sub(started).String())
	c.Set(fiber.HeaderContentType, fiber.MIMEOctetStream)
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="cartera-%s.db"`, started.UTC().Format("20060102T150405Z")))
	c.Set(fiber.HeaderCacheControl, "no-store")
	// fasthttp closes the body stream once written, or when the response
	// is dropped (HEAD, a client gone): either way the snapshot goes.
	return c.SendStream(&backupStream{f: f, conn: c.Context().Conn()}, int(size))
}

// snapshot writes the database to a new file in the data folder and
// returns it open at its start.
func (a *api) snapshot() (*os.File, int64, error) {
	tx, err := a.store.DB().Begin(false)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, 0, profiles.ErrClosed
	} else if err != nil {
		return nil, 0, fmt.Errorf("backup: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	f, err := os.CreateTemp(filepath.Dir(a.store.DB().Path()), backupPattern)
	if err != nil {
		return nil, 0, fmt.Errorf("backup: create snapshot: %w", err)
	}
	fail := func(err error) (*os.File, int64, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, 0, fmt.Errorf("backup: write snapshot: %w", err)
	}
	n, err := tx.WriteTo(f)
	if err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, n, nil
}

// backupStream is the body of a backup download: the snapshot, removed on
// Close. The server's WriteTimeout bounds writing a whole response, and a
// large file over a slow link takes longer; so each chunk pushes the
// connection's write deadline on: a stalled client is still cut off, a
// steady one is not.
type backupStream struct {
	f    *os.File
	conn net.Conn
}

func (s *backupStream) Read(p []byte) (int, error) {
	if s.conn != nil {
		_ = s.conn.SetWriteDeadline(time.Now().Add(backupChunkTimeout))
	}
	return s.f.Read(p)
}

func (s *backupStream) Close() error {
	err := s.f.Close()
	if rerr := os.Remove(s.f.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// removeStale deletes what backups a crash cut off left beside the data
// file data: the files and folders matching pattern (a download in
// progress removes its own).
func removeStale(data, pattern string) error {
	stale, err := filepath.Glob(filepath.Join(filepath.Dir(data), pattern))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range stale {
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
