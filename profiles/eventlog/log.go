// Package eventlog is an append-only, segmented, checksummed log on local
// disk: ingestion appends raw events to it and acknowledges them once the
// log has fsynced them; processors read it from an offset.
//
// Records are numbered by offset, consecutive from the first. A segment
// file holds consecutive records and is named by the offset of its first
// one, fixed-width (00000000000000000001.seg), so names sort as offsets.
// A record on disk is
//
//	length (uint32, little endian) | CRC-32C of the payload (uint32) | payload
//
// Appends are group-committed: one writer takes every append queued, writes
// them and fsyncs once for all of them; Append returns only after that
// fsync, and readers see a record only after it (so nothing a reader acts
// on can vanish in a crash). On open, a torn or corrupted tail of the last
// segment (a crash in the middle of a write) is truncated to the last good
// record, and what was dropped is logged.
package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HeaderSize is the size of a record's header: length and checksum.
const HeaderSize = 8

// MaxRecord bounds one record's payload; a header claiming more is corrupt.
const MaxRecord = 4 << 20

// DefaultSegmentBytes is the size past which the writer starts a new segment.
const DefaultSegmentBytes = 64 << 20

// maxBatchBytes bounds what one group commit writes.
const maxBatchBytes = 16 << 20

const segSuffix = ".seg"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Append and Read after Close.
var ErrClosed = errors.New("event log closed")

// ErrTrimmed is returned by Read for an offset below the first one kept.
var ErrTrimmed = errors.New("event log: offset trimmed")

// ErrTooLarge is returned by Append for a record over MaxRecord.
var ErrTooLarge = errors.New("event log: record too large")

// ErrCorrupt is returned by Read when a record before the tail fails its
// checksum (the disk changed under the log).
var ErrCorrupt = errors.New("event log: corrupt record")

// File is what the log writes a segment through: *os.File has it. Tests
// wrap it to inject write and fsync errors.
type File interface {
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// Options configure a Log.
type Options struct {
	// SegmentBytes is the size past which a new segment starts (a segment
	// may exceed it by one group commit); DefaultSegmentBytes when 0.
	SegmentBytes int64
	// FirstOffset is the offset of the first record of an empty log
	// (1 when 0): a log recreated under a store that applied up to n
	// starts at n+1.
	FirstOffset uint64
	// Logger receives what open truncated; discarded when nil.
	Logger *slog.Logger
	// OpenFile opens segment files for writing; os.OpenFile when nil.
	OpenFile func(name string, flag int, perm os.FileMode) (File, error)
	// NoSync skips fsync (benchmarks that measure everything but the disk).
	NoSync bool
}

type segment struct {
	first uint64
	// last is the offset of its last committed record (first-1: none).
	last uint64
	// size is the committed bytes.
	size int64
	path string
	rd   *os.File // opened lazily by readers
}

// Log is an open event log. Its methods are safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	segs      []*segment
	committed uint64 // last durable offset (first-1 when empty)
	notify    chan struct{}
	hint      readHint
	closed    bool

	reqs     chan *appendReq
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// Writer state, owned by the writer goroutine.
	active File
	// dirty says a failed write may have left bytes past the active
	// segment's committed size: they are truncated before the next write.
	dirty bool
}

type readHint struct {
	next  uint64
	first uint64 // segment
	pos   int64
}

type appendReq struct {
	recs        [][]byte
	first, last uint64
	done        chan error
}

// Open opens (creating if needed) the log in dir and starts its writer.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.FirstOffset == 0 {
		opts.FirstOffset = 1
	}
	if opts.OpenFile == nil {
		opts.OpenFile = func(name string, flag int, perm os.FileMode) (File, error) {
			return os.OpenFile(name, flag, perm)
		}
	}
	l := &Log{dir: dir, opts: opts, log: opts.Logger, notify: make(chan struct{}),
		reqs: make(chan *appendReq, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	firsts, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	for i, first := range firsts {
		seg := &segment{first: first, path: segPath(dir, first)}
		if i < len(firsts)-1 {
			fi, err := os.Stat(seg.path)
			if err != nil {
				return nil, fmt.Errorf("open event log: %w", err)
			}
			seg.size, seg.last = fi.Size(), firsts[i+1]-1
		}
		l.segs = append(l.segs, seg)
	}
	if len(l.segs) == 0 {
		if err := l.createSegment(opts.FirstOffset); err != nil {
			return nil, err
		}
	} else {
		if err := l.recoverTail(); err != nil {
			return nil, err
		}
	}
	tail := l.segs[len(l.segs)-1]
	l.committed = tail.last
	if l.active, err = opts.OpenFile(tail.path, os.O_WRONLY, 0o600); err != nil {
		return nil, fmt.Errorf("open event log segment: %w", err)
	}
	go l.writer()
	return l, nil
}

func segPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", first, segSuffix))
}

func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	var firsts []uint64
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("open event log: unexpected segment file %s in %s", name, dir)
		}
		firsts = append(firsts, n)
	}
	slices.Sort(firsts)
	return firsts, nil
}

// recoverTail scans the last segment and truncates it after its last
// good record.
func (l *Log) recoverTail() error {
	tail := l.segs[len(l.segs)-1]
	data, err := os.ReadFile(tail.path)
	if err != nil {
		return fmt.Errorf("open event log: %w", err)
	}
	var pos int64
	n := uint64(0)
	for {
		size, ok := decodeAt(data[pos:])
		if !ok {
			break
		}
		pos += size
		n++
	}
	tail.size, tail.last = pos, tail.first+n-1
	if dropped := int64(len(data)) - pos; dropped > 0 {
		// Only a write never acknowledged can be there: Append returns
		// after the fsync of whole records.
		l.log.Warn("event log: truncated a torn or corrupt tail", "segment", filepath.Base(tail.path),
			"kept_records", n, "kept_bytes", pos, "dropped_bytes", dropped, "next_offset", tail.last+1)
		f, err := l.opts.OpenFile(tail.path, os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("open event log: %w", err)
		}
		err = f.Truncate(pos)
		if err == nil && !l.opts.NoSync {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("open event log: truncate torn tail: %w", err)
		}
	}
	return nil
}

// decodeAt checks the record at the start of b and returns its size on
// disk; ok is false if b does not start with a whole, intact record.
func decodeAt(b []byte) (size int64, ok bool) {
	payload, size, err := Decode(b)
	_ = payload
	return size, err == nil
}

// Decode decodes the record at the start of b: its payload (a sub-slice of
// b) and its size on disk. It fails on a short or corrupt record.
func Decode(b []byte) (payload []byte, size int64, err error) {
	if len(b) < HeaderSize {
		return nil, 0, io.ErrUnexpectedEOF
	}
	n := binary.LittleEndian.Uint32(b)
	if n > MaxRecord {
		return nil, 0, fmt.Errorf("%w: length %d over %d", ErrCorrupt, n, MaxRecord)
	}
	if uint64(len(b)-HeaderSize) < uint64(n) {
		return nil, 0, io.ErrUnexpectedEOF
	}
	payload = b[HeaderSize : HeaderSize+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return payload, HeaderSize + int64(n), nil
}

// AppendRecord appends the on-disk form of payload to dst.
func AppendRecord(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	return append(dst, payload...)
}

// createSegment creates an empty segment file and makes its name durable.
func (l *Log) createSegment(first uint64) error {
	path := segPath(l.dir, first)
	f, err := l.opts.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create event log segment: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create event log segment: %w", err)
	}
	if !l.opts.NoSync {
		if err := syncDir(l.dir); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("create event log segment: %w", err)
		}
	}
	l.mu.Lock()
	l.segs = append(l.segs, &segment{first: first, last: first - 1, path: path})
	l.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Append writes records, in order, and returns their offsets once they
// are durable. Concurrent calls share one fsync. If ctx ends first, Append
// returns its error, but the records may still be committed.
func (l *Log) Append(ctx context.Context, recs [][]byte) (first, last uint64, err error) {
	if len(recs) == 0 {
		return 0, 0, errors.New("event log: append of no records")
	}
	for i, r := range recs {
		if len(r) > MaxRecord {
			return 0, 0, fmt.Errorf("%w: record %d is %d bytes, over %d", ErrTooLarge, i, len(r), MaxRecord)
		}
	}
	req := &appendReq{recs: recs, done: make(chan error, 1)}
	select {
	case <-l.stop:
		return 0, 0, ErrClosed
	default:
	}
	select {
	case l.reqs <- req:
	case <-l.stop:
		return 0, 0, ErrClosed
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	select {
	case err := <-req.done:
		return req.first, req.last, err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// writer is the single writer: it takes whatever appends are queued,
// writes them, fsyncs once and answers them all.
func (l *Log) writer() {
	defer close(l.done)
	batch := make([]*appendReq, 0, 256)
	var buf []byte
	for {
		var first *appendReq
		select {
		case first = <-l.reqs:
		case <-l.stop:
			for {
				select {
				case r := <-l.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		bytes := recsSize(first.recs)
	gather:
		for bytes < maxBatchBytes {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
				bytes += recsSize(r.recs)
			default:
				break gather
			}
		}
		var err error
		buf, err = l.commit(batch, buf[:0])
		for _, r := range batch {
			r.done <- err
		}
		if cap(buf) > maxBatchBytes*2 {
			buf = nil
		}
	}
}

func recsSize(recs [][]byte) int {
	n := 0
	for _, r := range recs {
		n += HeaderSize + len(r)
	}
	return n
}

// commit writes one group of appends and fsyncs it. On error nothing of
// the group is acknowledged and its bytes are cut off before the next.
func (l *Log) commit(batch []*appendReq, buf []byte) ([]byte, error) {
	l.mu.Lock()
	tail := l.segs[len(l.segs)-1]
	next, size := l.committed+1, tail.size
	l.mu.Unlock()
	if l.dirty {
		if err := l.active.Truncate(size); err != nil {
			return buf, fmt.Errorf("event log: cut a failed write: %w", err)
		}
		l.dirty = false
	}
	if size >= l.opts.SegmentBytes {
		if err := l.rotate(next); err != nil {
			return buf, err
		}
		l.mu.Lock()
		tail = l.segs[len(l.segs)-1]
		l.mu.Unlock()
		size = 0
	}
	n := next
	for _, r := range batch {
		r.first = n
		for _, rec := range r.recs {
			buf = AppendRecord(buf, rec)
		}
		n += uint64(len(r.recs))
		r.last = n - 1
	}
	if _, err := l.active.WriteAt(buf, size); err != nil {
		l.dirty = true
		return buf, fmt.Errorf("event log: write: %w", err)
	}
	if !l.opts.NoSync {
		if err := l.active.Sync(); err != nil {
			l.dirty = true
			return buf, fmt.Errorf("event log: fsync: %w", err)
		}
	}
	l.mu.Lock()
	tail.size = size + int64(len(buf))
	tail.last = n - 1
	l.committed = n - 1
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	return buf, nil
}

// rotate closes the active segment (its contents are already synced) and
// starts one whose first record will be next.
func (l *Log) rotate(next uint64) error {
	if err := l.createSegment(next); err != nil {
		return err
	}
	f, err := l.opts.OpenFile(segPath(l.dir, next), os.O_WRONLY, 0o600)
	if err != nil {
		l.mu.Lock()
		l.segs = l.segs[:len(l.segs)-1]
		l.mu.Unlock()
		_ = os.Remove(segPath(l.dir, next))
		return fmt.Errorf("open event log segment: %w", err)
	}
	_ = l.active.Close()
	l.active = f
	return nil
}

// Read returns records from offset from on, at most max of them (and a few
// MB), waiting until at least one is committed or ctx ends.
func (l *Log) Read(ctx context.Context, from uint64, max int) ([][]byte, error) {
	if max < 1 {
		max = 1
	}
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, ErrClosed
		}
		if from <= l.committed {
			break
		}
		wait := l.notify
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if from < l.segs[0].first {
		first := l.segs[0].first
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %d is below the first kept, %d", ErrTrimmed, from, first)
	}
	i, _ := slices.BinarySearchFunc(l.segs, from, func(s *segment, off uint64) int {
		switch {
		case s.first > off:
			return 1
		case s.first < off:
			return -1
		}
		return 0
	})
	if i == len(l.segs) || l.segs[i].first > from {
		i--
	}
	for i < len(l.segs)-1 && from > l.segs[i].last {
		i++ // empty segments
	}
	seg := l.segs[i]
	if seg.rd == nil {
		f, err := os.Open(seg.path)
		if err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("event log: read: %w", err)
		}
		seg.rd = f
	}
	// Read outside the lock, up to what is committed now: the writer
	// only appends past it, and Trim never removes a segment a reader
	// past its end can still ask for.
	rd, name, segFirst, last, end := seg.rd, filepath.Base(seg.path), seg.first, seg.last, seg.size
	pos, at := int64(0), seg.first
	if l.hint.next == from && l.hint.first == seg.first {
		pos, at = l.hint.pos, from
	}
	l.mu.Unlock()

	var out [][]byte
	for at <= last && len(out) < max {
		want := min(end-pos, readChunk)
		if want < HeaderSize {
			return nil, fmt.Errorf("%w: segment %s ends before offset %d", ErrCorrupt, name, at)
		}
		chunk := make([]byte, want)
		if _, err := rd.ReadAt(chunk, pos); err != nil {
			return nil, fmt.Errorf("event log: read: %w", err)
		}
		b := chunk
		progressed := false
		for at <= last && len(out) < max {
			payload, size, err := Decode(b)
			if errors.Is(err, io.ErrUnexpectedEOF) && progressed {
				break // the next record spans the chunk's end
			}
			if err != nil {
				return nil, fmt.Errorf("event log: offset %d in %s: %w", at, name, err)
			}
			progressed = true
			if at >= from {
				out = append(out, payload)
			}
			b = b[size:]
			pos += size
			at++
		}
		if len(out) > 0 {
			break
		}
	}
	l.mu.Lock()
	l.hint = readHint{next: at, first: segFirst, pos: pos}
	l.mu.Unlock()
	return out, nil
}

// readChunk is how much Read reads at once; more than a record can be.
const readChunk = MaxRecord + HeaderSize + 1<<20

// Committed is the offset of the last durable record (FirstOffset-1 for an
// empty log).
func (l *Log) Committed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.committed
}

// SegmentInfo describes one segment.
type SegmentInfo struct {
	First, Last uint64
	Bytes       int64
	// ModTime is when its file was last written.
	ModTime time.Time
}

// Segments describes the segments, oldest first.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]SegmentInfo, 0, len(l.segs))
	for _, s := range l.segs {
		info := SegmentInfo{First: s.first, Last: s.last, Bytes: s.size}
		if fi, err := os.Stat(s.path); err == nil {
			info.ModTime = fi.ModTime()
		}
		out = append(out, info)
	}
	return out
}

// FirstOffset is the offset of the first record the log keeps (past the
// last when it holds none).
func (l *Log) FirstOffset(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.segs[0].first, nil
}

// Bytes is the committed size of all segments.
func (l *Log) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Trim removes whole segments whose records are all below offset below;
// the segment being written is never removed. It returns how many it
// removed.
func (l *Log) Trim(below uint64) (int, error) {
	l.mu.Lock()
	var gone []*segment
	for len(l.segs) > 1 && l.segs[1].first <= below {
		gone = append(gone, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	for i, s := range gone {
		if s.rd != nil {
			_ = s.rd.Close()
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return i, fmt.Errorf("event log: trim: %w", err)
		}
	}
	return len(gone), nil
}

// Close stops the writer (appends still queued fail with ErrClosed) and
// closes the files; blocked readers return ErrClosed.
func (l *Log) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.notify)
	l.notify = make(chan struct{})
	for _, s := range l.segs {
		if s.rd != nil {
			_ = s.rd.Close()
		}
	}
	return l.active.Close()
}
