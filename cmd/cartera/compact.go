package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactTxSize bounds the pages one transaction of the copy writes.
const compactTxSize = 64 << 20

// compact is `cartera compact [--data FILE]`: it copies the live records
// of a stopped gateway's bbolt file into a new file and puts it in place.
// bbolt does not overwrite the pages a deletion frees: the bytes of an
// erased person stay in the file (and in backups, which copy it page by
// page) until the pages are reused. After an erasure that must leave no
// trace, stop the gateway and compact; the file also shrinks.
func (m *Main) compact(ctx context.Context, args []string) error {
	fset := newCommandFlags("compact")
	data := fset.String("data", "", "the bbolt file (default: CARTERA_DATA, else ./data/cartera.db)")
	if err := fset.parse(m, args, false); err != nil {
		return err
	}
	path := *data
	if path == "" {
		path = m.Getenv("CARTERA_DATA")
	}
	if path == "" {
		path = DefaultConfig().Data
	}
	before, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	// A running serve holds the file's lock: fail fast and say so.
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("compact %s: the file is in use: stop cartera serve first", path)
	}
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".compact")
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, before.Mode().Perm(), &bbolt.Options{Timeout: time.Second, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("compact: create %s: %w", tmp, err)
	}
	if err := bbolt.Compact(dst, src, compactTxSize); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact: close %s: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := src.Close(); err != nil {
		return fmt.Errorf("compact: close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("compact: put the copy in place: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	after, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	fmt.Fprintf(m.Stdout, "compacted %s: %d → %d bytes; freed pages, and what they held, are gone\n", path, before.Size(), after.Size())
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
