package profiles

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
)

// A partition's file can be copied out whole (a snapshot) and put back on
// another node, so that the partition's state moves with it
// (profiles/jetstream keeps the copies in a JetStream Object Store). The
// copy is bbolt's consistent Tx.WriteTo, so the offset it covers is the
// one stored in it (meta "log_applied/<p>", written in the same
// transaction as the state), never one read apart from it. A copy ends
// with a trailer, checked before the copy is opened (bbolt trusts its
// file: a copy cut short would crash the process that opens it):
//
//	"CARTSNAP" | 8-byte big-endian length of the file before it | SHA-256 of that file
//
// Besides:
//
//	meta  "log_epoch/<p>" → the line of state the file belongs to: a random
//	      string, new in a file that starts empty and in each restored
//	      copy (applying again from a snapshot makes state that can
//	      differ from what the snapshot's first owner made after it: new
//	      profiles get new random ids), kept while a node goes on applying
//	      its own file; a snapshot carries it. A file and a snapshot of
//	      the same epoch are of one line, so the one further along holds
//	      everything the other does.

// PartitionState is where a partition stands in a file or a snapshot.
type PartitionState struct {
	// Offset is the offset through which the partition is applied (0:
	// none of it).
	Offset uint64
	// Epoch names the line of state ("" in a file without one).
	Epoch string
	// Bytes is the size of the snapshot written or restored (0 for a
	// file at rest).
	Bytes int64
}

func epochKey(p int) []byte { return []byte("log_epoch/" + strconv.Itoa(p)) }

func readPartitionState(tx *bbolt.Tx, p int) PartitionState {
	var st PartitionState
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return st
	}
	if v := meta.Get(partitionKey(p)); len(v) == 8 {
		st.Offset = binary.BigEndian.Uint64(v)
	}
	st.Epoch = string(meta.Get(epochKey(p)))
	return st
}

// SnapshotPartition writes a consistent copy of the store's file to w, in
// one read transaction (applying goes on meanwhile), and returns the state
// of partition p in that copy.
func (s *Store) SnapshotPartition(p int, w io.Writer) (PartitionState, error) {
	return snapshotDB(s.db, p, w)
}

const snapMagic = "CARTSNAP"

const trailerLen = len(snapMagic) + 8 + sha256.Size

func snapshotDB(db *bbolt.DB, p int, w io.Writer) (PartitionState, error) {
	var st PartitionState
	err := db.View(func(tx *bbolt.Tx) error {
		st = readPartitionState(tx, p)
		h := sha256.New()
		n, err := tx.WriteTo(io.MultiWriter(w, h))
		if err != nil {
			return err
		}
		trailer := binary.BigEndian.AppendUint64([]byte(snapMagic), uint64(n))
		trailer = h.Sum(trailer)
		if _, err := w.Write(trailer); err != nil {
			return err
		}
		st.Bytes = n + int64(len(trailer))
		return nil
	})
	if err != nil {
		return PartitionState{}, fmt.Errorf("snapshot partition %d: %w", p, err)
	}
	return st, nil
}

// ensureEpoch gives partition p an epoch in the store if it has none.
func (s *Store) ensureEpoch(p int) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(epochKey(p)) != nil {
			return nil
		}
		return putNewEpoch(tx, s.rand, p)
	})
	if err != nil {
		return fmt.Errorf("record the epoch of partition %d: %w", p, err)
	}
	return nil
}

func putNewEpoch(tx *bbolt.Tx, rnd io.Reader, p int) error {
	b := make([]byte, 12)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return fmt.Errorf("make an epoch: %w", err)
	}
	return tx.Bucket(bucketMeta).Put(epochKey(p), []byte(hex.EncodeToString(b)))
}

// openAtRest opens a partition file that no store has open, read-only.
func openAtRest(path string) (*bbolt.DB, error) {
	return bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
}

// Snapshot writes a consistent copy of partition p's file to w: from its
// open store while this node applies p, else from the file at rest.
func (f *PartitionFiles) Snapshot(p int, w io.Writer) (PartitionState, error) {
	f.mu.Lock()
	st := f.held[p]
	if st == nil {
		if f.busy[p] {
			f.mu.Unlock()
			return PartitionState{}, fmt.Errorf("snapshot partition %d: it is in use", p)
		}
		// Kept from being opened to apply until the copy is written.
		f.busy[p] = true
		defer f.unbusy(p)
	}
	f.mu.Unlock()
	if st != nil {
		// A Close meanwhile waits for the read transaction to end.
		return st.SnapshotPartition(p, w)
	}
	db, err := openAtRest(PartitionPath(f.dir, p))
	if err != nil {
		return PartitionState{}, fmt.Errorf("snapshot partition %d: %w", p, err)
	}
	defer db.Close()
	return snapshotDB(db, p, w)
}

// State reads where partition p's file stands at rest: zero when it has
// no file. It fails while this node applies p.
func (f *PartitionFiles) State(p int) (PartitionState, error) {
	path := PartitionPath(f.dir, p)
	f.mu.Lock()
	if f.held[p] != nil || f.busy[p] {
		f.mu.Unlock()
		return PartitionState{}, fmt.Errorf("partition %d is in use", p)
	}
	f.busy[p] = true
	f.mu.Unlock()
	defer f.unbusy(p)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return PartitionState{}, nil
	}
	st, err := PartitionFileState(path, p)
	if err != nil {
		return PartitionState{}, fmt.Errorf("read the state of partition %d: %w", p, err)
	}
	return st, nil
}

// Restore replaces partition p's file with the snapshot read from r, once
// r is read to its end without error, its trailer matches and the copy
// opens as a store file; a failure leaves the file as it was. The restored
// file gets an epoch of its own. It returns the state of p in it. It fails
// while this node applies p.
func (f *PartitionFiles) Restore(p int, r io.Reader) (PartitionState, error) {
	path := PartitionPath(f.dir, p)
	f.mu.Lock()
	if f.held[p] != nil || f.busy[p] {
		f.mu.Unlock()
		return PartitionState{}, fmt.Errorf("restore partition %d: it is in use", p)
	}
	f.busy[p] = true
	f.mu.Unlock()
	defer f.unbusy(p)
	fail := func(err error) (PartitionState, error) {
		return PartitionState{}, fmt.Errorf("restore partition %d: %w", p, err)
	}
	if err := os.MkdirAll(f.dir, 0o750); err != nil {
		return fail(err)
	}
	tmp := path + ".restore"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp) // after the rename, nothing is there
	n, err := io.Copy(out, r)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(fmt.Errorf("write %s: %w", tmp, err))
	}
	if err := checkTrailer(tmp, n); err != nil {
		return fail(fmt.Errorf("the snapshot (%d bytes) is not whole: %w", n, err))
	}
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fail(fmt.Errorf("the snapshot (%d bytes) is not a store file: %w", n, err))
	}
	var st PartitionState
	err = db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return errors.New("the snapshot has no meta bucket")
		}
		if err := putNewEpoch(tx, rand.Reader, p); err != nil {
			return err
		}
		st = readPartitionState(tx, p)
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(f.dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	st.Bytes = n
	return st, nil
}

// checkTrailer checks the trailer of a snapshot of size bytes at path and
// cuts it off.
func checkTrailer(path string, size int64) error {
	if size < int64(trailerLen) {
		return errors.New("shorter than its trailer")
	}
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer fh.Close()
	trailer := make([]byte, trailerLen)
	if _, err := fh.ReadAt(trailer, size-int64(trailerLen)); err != nil {
		return err
	}
	length := int64(binary.BigEndian.Uint64(trailer[len(snapMagic):]))
	switch {
	case string(trailer[:len(snapMagic)]) != snapMagic:
		return errors.New("no snapshot trailer at its end")
	case length != size-int64(trailerLen):
		return fmt.Errorf("its trailer says %d bytes before it, there are %d", length, size-int64(trailerLen))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fh, 0, length)); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), trailer[len(snapMagic)+8:]) {
		return errors.New("its SHA-256 does not match its trailer")
	}
	if err := fh.Truncate(length); err != nil {
		return err
	}
	return fh.Sync()
}

func (f *PartitionFiles) unbusy(p int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.busy, p)
}

// PartitionFileState reads where partition p stands in the store file at
// path, which no store has open (a test's or a tool's look at a node's
// file).
func PartitionFileState(path string, p int) (PartitionState, error) {
	db, err := openAtRest(path)
	if err != nil {
		return PartitionState{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var st PartitionState
	err = db.View(func(tx *bbolt.Tx) error {
		st = readPartitionState(tx, p)
		return nil
	})
	return st, err
}
