package profiles

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"
)

// errReadersOpen says a scrub could not run because read transactions
// that began before it were still open.
var errReadersOpen = errors.New("read transactions still open")

// Scrub overwrites every free page of the bbolt file with zeros and syncs
// the file, so that what an erasure deleted is gone from the disk and not
// only from the tree. bbolt, like SQLite without secure_delete, leaves a
// page it frees as it was until the page is reused; Erase calls Scrub.
//
// A free page may still be read by a read transaction that began before
// the page was freed, so Scrub only writes once no such reader is left:
// it begins a write transaction (which makes every page freed before it
// reusable) and checks that no read transaction is open; readers that
// begin after that see a tree that no longer refers to any free page. If
// readers stay open, it tries again until wait has passed.
//
// It holds the writer for its duration, which is proportional to the size
// of the file (each page's type is looked up) plus the free pages written.
func (s *Store) Scrub(wait time.Duration) (zeroed int, err error) {
	deadline := time.Now().Add(wait) // real time: a bound on waiting, not an instant of the business clock
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		zeroed, err = s.scrubOnce()
		if !errors.Is(err, errReadersOpen) || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(backoff)
	}
	if err != nil {
		return zeroed, fmt.Errorf("scrub free pages: %w", err)
	}
	s.metrics.ScrubbedPages.Add(float64(zeroed))
	return zeroed, nil
}

func (s *Store) scrubOnce() (zeroed int, err error) {
	f, err := os.OpenFile(s.db.Path(), os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size := s.db.Info().PageSize
	page, zero := make([]byte, size), make([]byte, size)
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if n := s.db.Stats().OpenTxN; n > 0 {
			return fmt.Errorf("%w (%d)", errReadersOpen, n)
		}
		for id := 2; ; id++ {
			info, err := tx.Page(id)
			if err != nil {
				return fmt.Errorf("page %d: %w", id, err)
			}
			if info == nil {
				break // past the last page
			}
			if info.Type != "free" {
				continue
			}
			off := int64(id) * int64(size)
			if _, err := f.ReadAt(page, off); err != nil {
				return fmt.Errorf("read page %d: %w", id, err)
			}
			if bytes.Equal(page, zero) {
				continue
			}
			if _, err := f.WriteAt(zero, off); err != nil {
				return fmt.Errorf("zero page %d: %w", id, err)
			}
			zeroed++
		}
		if zeroed == 0 {
			return nil
		}
		return f.Sync()
	})
	return zeroed, err
}
