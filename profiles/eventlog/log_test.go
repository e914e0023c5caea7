package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func rec(i int) []byte { return fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%37)) }

func mustOpen(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		first, last, err := l.Append(context.Background(), [][]byte{rec(i)})
		if err != nil {
			t.Fatal(err)
		}
		if first != uint64(i) || last != uint64(i) {
			t.Fatalf("append %d: offsets %d..%d", i, first, last)
		}
	}
}

// readAll reads every record from offset from to the committed end.
func readAll(t *testing.T, l *Log, from uint64) [][]byte {
	t.Helper()
	var out [][]byte
	for from <= l.Committed() {
		recs, err := l.Read(context.Background(), from, 7)
		if err != nil {
			t.Fatalf("read from %d: %v", from, err)
		}
		out = append(out, recs...)
		from += uint64(len(recs))
	}
	return out
}

func checkRecords(t *testing.T, got [][]byte, first, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if want := rec(first + i); !bytes.Equal(r, want) {
			t.Fatalf("record %d = %q, want %q", first+i, r, want)
		}
	}
}

func TestAppendReadAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 300})
	appendN(t, l, 1, 50)
	// A batch of several records gets consecutive offsets.
	first, last, err := l.Append(context.Background(), [][]byte{rec(51), rec(52), rec(53)})
	if err != nil || first != 51 || last != 53 {
		t.Fatalf("batch append: %d..%d %v", first, last, err)
	}
	if n := len(l.Segments()); n < 5 {
		t.Fatalf("%d segments, want several of 300 bytes", n)
	}
	checkRecords(t, readAll(t, l, 1), 1, 53)
	checkRecords(t, readAll(t, l, 17), 17, 37)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{SegmentBytes: 300})
	defer l.Close()
	if l.Committed() != 53 {
		t.Fatalf("committed after reopen %d, want 53", l.Committed())
	}
	checkRecords(t, readAll(t, l, 1), 1, 53)
	appendN(t, l, 54, 3)
	checkRecords(t, readAll(t, l, 40), 40, 17)
}

func TestFirstOffsetOfEmptyLog(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{FirstOffset: 1000})
	defer l.Close()
	if l.Committed() != 999 {
		t.Fatalf("committed %d, want 999", l.Committed())
	}
	first, _, err := l.Append(context.Background(), [][]byte{[]byte("a")})
	if err != nil || first != 1000 {
		t.Fatalf("first offset %d %v, want 1000", first, err)
	}
}

// lastSegment returns the path of the newest segment and the byte offset
// where its last record starts.
func lastRecordStart(t *testing.T, dir string) (string, int64, int64) {
	t.Helper()
	firsts, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := segPath(dir, firsts[len(firsts)-1])
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pos, start int64
	for pos < int64(len(data)) {
		_, size, err := Decode(data[pos:])
		if err != nil {
			t.Fatal(err)
		}
		start = pos
		pos += size
	}
	return path, start, int64(len(data))
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// Every cut inside the last record loses that record only; the log then
// appends after the one before it.
func TestTornTailAtEveryByte(t *testing.T) {
	src := t.TempDir()
	l := mustOpen(t, src, Options{SegmentBytes: 400})
	appendN(t, l, 1, 30)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path, start, end := lastRecordStart(t, src)
	if start == 0 {
		t.Fatal("the last segment should hold more than one record")
	}
	for cut := start; cut < end; cut++ {
		dir := copyDir(t, src)
		if err := os.Truncate(filepath.Join(dir, filepath.Base(path)), cut); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		l := mustOpen(t, dir, Options{SegmentBytes: 400, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if l.Committed() != 29 {
			t.Fatalf("cut at %d: committed %d, want 29", cut, l.Committed())
		}
		checkRecords(t, readAll(t, l, 1), 1, 29)
		if cut > start && !strings.Contains(logs.String(), fmt.Sprintf("dropped_bytes=%d", cut-start)) {
			t.Fatalf("cut at %d: open did not log what it dropped: %s", cut, logs.String())
		}
		appendN(t, l, 30, 1)
		_ = l.Close()
		l = mustOpen(t, dir, Options{SegmentBytes: 400})
		checkRecords(t, readAll(t, l, 1), 1, 30)
		_ = l.Close()
	}
}

func TestFlippedByteInLastRecord(t *testing.T) {
	src := t.TempDir()
	l := mustOpen(t, src, Options{})
	appendN(t, l, 1, 10)
	_ = l.Close()
	path, start, end := lastRecordStart(t, src)
	for _, at := range []int64{start, start + 5, start + HeaderSize, end - 1} {
		dir := copyDir(t, src)
		p := filepath.Join(dir, filepath.Base(path))
		b, _ := os.ReadFile(p)
		b[at] ^= 0x40
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, dir, Options{})
		if l.Committed() != 9 {
			t.Fatalf("flip at %d: committed %d, want 9", at, l.Committed())
		}
		checkRecords(t, readAll(t, l, 1), 1, 9)
		_ = l.Close()
	}
}

func TestConcurrentAppenders(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{SegmentBytes: 4096})
	defer l.Close()
	const writers, each = 8, 100
	got := make([]atomic.Pointer[[]byte], writers*each*2+1)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				a := fmt.Appendf(nil, "w%d-%d-a", w, i)
				b := fmt.Appendf(nil, "w%d-%d-b", w, i)
				first, last, err := l.Append(context.Background(), [][]byte{a, b})
				if err != nil || last != first+1 {
					t.Errorf("append: %d..%d %v", first, last, err)
					return
				}
				got[first].Store(&a)
				got[last].Store(&b)
			}
		})
	}
	wg.Wait()
	all := readAll(t, l, 1)
	if len(all) != writers*each*2 {
		t.Fatalf("read %d records, want %d", len(all), writers*each*2)
	}
	for i, r := range all {
		want := got[i+1].Load()
		if want == nil || !bytes.Equal(*want, r) {
			t.Fatalf("offset %d holds %q, its appender was told another", i+1, r)
		}
	}
}

func TestReadWaitsForAppend(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	got := make(chan [][]byte, 1)
	go func() {
		recs, err := l.Read(context.Background(), 1, 10)
		if err != nil {
			t.Error(err)
		}
		got <- recs
	}()
	appendN(t, l, 1, 1)
	select {
	case recs := <-got:
		checkRecords(t, recs, 1, 1)
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked reader was not woken by an append")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Read(ctx, 2, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("read past the end with a cancelled context: %v", err)
	}
}

// faultyFile fails writes or syncs while its log's fault is set.
type faultyFile struct {
	File
	fault *atomic.Value // of string: "write", "sync" or ""
}

func (f faultyFile) WriteAt(b []byte, off int64) (int, error) {
	if f.fault.Load() == "write" {
		// A partial write, as a full disk leaves.
		n, _ := f.File.WriteAt(b[:len(b)/2], off)
		return n, errors.New("no space left on device")
	}
	return f.File.WriteAt(b, off)
}

func (f faultyFile) Sync() error {
	if f.fault.Load() == "sync" {
		return errors.New("input/output error")
	}
	return f.File.Sync()
}

func TestInjectedWriteAndSyncErrors(t *testing.T) {
	for _, fault := range []string{"write", "sync"} {
		t.Run(fault, func(t *testing.T) {
			dir := t.TempDir()
			var cur atomic.Value
			cur.Store("")
			opts := Options{OpenFile: func(name string, flag int, perm os.FileMode) (File, error) {
				f, err := os.OpenFile(name, flag, perm)
				if err != nil {
					return nil, err
				}
				return faultyFile{f, &cur}, nil
			}}
			l := mustOpen(t, dir, opts)
			appendN(t, l, 1, 5)
			cur.Store(fault)
			for range 3 {
				if _, _, err := l.Append(context.Background(), [][]byte{[]byte("lost-1"), []byte("lost-2")}); err == nil {
					t.Fatal("append succeeded while the file fails")
				}
			}
			if l.Committed() != 5 {
				t.Fatalf("committed %d after failures, want 5", l.Committed())
			}
			cur.Store("")
			appendN(t, l, 6, 5)
			checkRecords(t, readAll(t, l, 1), 1, 10)
			_ = l.Close()
			l = mustOpen(t, dir, Options{})
			defer l.Close()
			checkRecords(t, readAll(t, l, 1), 1, 10)
		})
	}
}

func TestTrimRemovesWholeSegmentsBelow(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 200})
	defer l.Close()
	appendN(t, l, 1, 40)
	segs := l.Segments()
	cut := segs[2].First + 1 // inside the third segment
	n, err := l.Trim(cut)
	if err != nil || n != 2 {
		t.Fatalf("trim removed %d segments (%v), want 2", n, err)
	}
	if got := l.Segments()[0].First; got != segs[2].First {
		t.Fatalf("first kept segment starts at %d, want %d", got, segs[2].First)
	}
	if _, err := l.Read(context.Background(), 1, 1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("read of a trimmed offset: %v", err)
	}
	checkRecords(t, readAll(t, l, cut), int(cut), 40-int(cut)+1)
	// The segment being written is never removed.
	if _, err := l.Trim(1 << 40); err != nil {
		t.Fatal(err)
	}
	if len(l.Segments()) != 1 {
		t.Fatalf("%d segments after trimming everything, want the active one", len(l.Segments()))
	}
	appendN(t, l, 41, 1)
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendRecord(nil, []byte(`{"type":"track"}`)))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, size, err := Decode(b)
		if err != nil {
			return
		}
		if size > int64(len(b)) || int64(len(payload))+HeaderSize != size {
			t.Fatalf("size %d, payload %d of %d bytes", size, len(payload), len(b))
		}
		if again := AppendRecord(nil, payload); !bytes.Equal(again, b[:size]) {
			t.Fatal("a decoded record does not encode to its bytes")
		}
	})
}
