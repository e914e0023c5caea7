package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	berrors "go.etcd.io/bbolt/errors"

	"cartera/profiles"
)

// backupChunkTimeout is how long one chunk of a backup download may take
// to reach the client.
const backupChunkTimeout = 30 * time.Second

// backup streams a consistent copy of the whole bbolt file (profiles,
// rules, journeys and outbox share it) with bbolt's Tx.WriteTo inside one
// read transaction: writers go on while it is read, and the copy is the
// file as of the moment the transaction began. Nothing is buffered beyond
// a pipe's chunk.
func (a *api) backup(c *fiber.Ctx) error {
	tx, err := a.store.DB().Begin(false)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return profiles.ErrClosed
	} else if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	size := tx.Size()
	pr, pw := io.Pipe()
	started := a.now()
	go func() {
		n, err := tx.WriteTo(pw)
		_ = tx.Rollback()
		// A client that goes away closes the pipe: not worth a warning.
		switch {
		case err == nil:
			a.log.Info("backup streamed", "bytes", n, "duration", a.now().Sub(started).String())
		case !errors.Is(err, io.ErrClosedPipe):
			a.log.Warn("backup failed", "bytes", n, "err", err)
		}
		pw.CloseWithError(err)
	}()
	c.Set(fiber.HeaderContentType, fiber.MIMEOctetStream)
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="cartera-%s.db"`, started.UTC().Format("20060102T150405Z")))
	c.Set(fiber.HeaderCacheControl, "no-store")
	// fasthttp closes the body stream once written, or when the response
	// is dropped: either way the read transaction ends.
	return c.SendStream(&backupStream{r: pr, conn: c.Context().Conn()}, int(size))
}

// backupStream is the body of a backup download. The server's
// WriteTimeout bounds writing a whole response, and a large file over a
// slow link takes longer; so each chunk pushes the connection's write
// deadline on: a stalled client is still cut off, a steady one is not.
type backupStream struct {
	r    *io.PipeReader
	conn net.Conn
}

func (s *backupStream) Read(p []byte) (int, error) {
	if s.conn != nil {
		_ = s.conn.SetWriteDeadline(time.Now().Add(backupChunkTimeout))
	}
	return s.r.Read(p)
}

func (s *backupStream) Close() error { return s.r.Close() }
