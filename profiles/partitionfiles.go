package profiles

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
)

// PartitionFiles keeps the state of each partition a node holds in a bbolt
// file of its own, <dir>/p<NNNN>.db, open while the node applies that
// partition: it is the Applier of a profiles/jetstream Node, in place of
// one Store for every partition. The files stay on disk when a partition
// moves away. A file is copied whole to move a partition's state
// (Snapshot) and put in place on its new owner (Restore) before that
// applies it (snapshot.go).
type PartitionFiles struct {
	dir  string
	open func(path string) (*Store, error)
	work PartitionWork

	mu   sync.Mutex
	held map[int]*Store
	busy map[int]bool // files being read or restored at rest
}

// NewPartitionFiles keeps partitions' files in dir; open opens the Store
// of one file (its config, processors and logger).
func NewPartitionFiles(dir string, open func(path string) (*Store, error)) *PartitionFiles {
	return &PartitionFiles{dir: dir, open: open, held: map[int]*Store{}, busy: map[int]bool{}}
}

// PartitionWork is work that runs beside the applier of a partition while
// the node holds it: what a store's engines do on their own (timers, the
// outbox's deliveries, sweepers). ctx ends when the applier returns (the
// partition handed over, its lease lost, the node closing); the file
// closes only after the work has returned. fence is the partition's
// lease check (PartitionLog.Fence): work with effects outside the file
// asks it first, and stops on an error wrapping ErrFenced.
type PartitionWork func(ctx context.Context, p int, st *Store, fence func() error)

// Beside runs work beside the applier of each partition, from the moment
// its file is open, or, when the partition's log is a PartitionHead, once
// the applier has caught up with where the partition ended when it
// started: a new owner's deliveries and timers then act on the state its
// old owner left, notes included (notes.go), not on an older snapshot's.
// Set it before the files are used.
func (f *PartitionFiles) Beside(work PartitionWork) { f.work = work }

// PartitionHead is what a PartitionLog offers when it knows where the
// partition ended in the stream when its applier started
// (profiles/jetstream's lease).
type PartitionHead interface {
	// Head is the offset of the partition's last record then (0: none).
	Head() uint64
}

// PartitionPath is the file of partition p under dir.
func PartitionPath(dir string, p int) string {
	return filepath.Join(dir, fmt.Sprintf("p%04d.db", p))
}

// ApplyPartition opens partition p's file, gives it an epoch if it has
// none (snapshot.go) and applies p into it (Store's ApplyPartition) until
// that returns; then it closes the file.
func (f *PartitionFiles) ApplyPartition(ctx context.Context, p int, from uint64, log PartitionLog) error {
	f.mu.Lock()
	if f.held[p] != nil || f.busy[p] {
		f.mu.Unlock()
		return fmt.Errorf("partition %d is in use already", p)
	}
	st, err := f.open(PartitionPath(f.dir, p))
	if err != nil {
		f.mu.Unlock()
		return fmt.Errorf("open partition %d: %w", p, err)
	}
	f.held[p] = st
	f.mu.Unlock()
	var working sync.WaitGroup
	workCtx, stopWork := context.WithCancel(ctx)
	if f.work != nil {
		working.Go(func() {
			if h, ok := log.(PartitionHead); ok && st.WaitPartition(workCtx, p, h.Head()) != nil {
				return // ctx ended first
			}
			f.work(workCtx, p, st, log.Fence)
		})
	}
	if err = st.ensureEpoch(p); err == nil {
		err = st.ApplyPartition(ctx, p, from, log)
	}
	stopWork()
	working.Wait()
	f.mu.Lock()
	delete(f.held, p)
	f.mu.Unlock()
	if cerr := st.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close partition %d: %w", p, cerr))
	}
	return err
}

// Store returns the open store of partition p, if this node applies it.
// It is closed when the node gives p up; calls on it then fail.
func (f *PartitionFiles) Store(p int) (*Store, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.held[p]
	return st, ok
}

// Open lists the partitions whose files are open, in order.
func (f *PartitionFiles) Open() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for p := range f.held {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
