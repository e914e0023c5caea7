package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"cartera/profiles/jetstream"
)

// natsServer is a real NATS server with JetStream on file storage in a
// test directory, restartable on the same port and store.
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, dir: t.TempDir(), port: server.RANDOM_PORT}
	ns.start()
	ns.port = ns.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: ns.port, JetStream: true, StoreDir: ns.dir, NoLog: true, NoSigs: true})
	if err != nil {
		ns.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		ns.t.Fatal("nats server did not start")
	}
	ns.s = s
}

func (ns *natsServer) stop() {
	if ns.s != nil {
		ns.s.Shutdown()
		ns.s.WaitForShutdown()
		ns.s = nil
	}
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

func testConfig(url string) jetstream.Config {
	cfg := jetstream.DefaultConfig()
	cfg.URL, cfg.Partitions, cfg.AckWait = url, 8, 2*time.Second
	return cfg
}

func open(t testing.TB, cfg jetstream.Config) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func event(user string, i int) []byte {
	return fmt.Appendf(nil, `{"type":"track","event":"e%d","userId":%q}`, i, user)
}

func readN(t *testing.T, l *jetstream.Log, from uint64, n int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out [][]byte
	for len(out) < n {
		recs, err := l.Read(ctx, from+uint64(len(out)), n-len(out))
		if err != nil {
			t.Fatalf("read from %d after %d records: %v", from, len(out), err)
		}
		out = append(out, recs...)
	}
	return out
}

func TestRoundTripAcrossServerRestart(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	var want [][]byte
	for b := range 3 {
		batch := [][]byte{event("ann", b*2), event("bob", b*2+1)}
		first, last, err := l.Append(t.Context(), batch)
		if err != nil {
			t.Fatal(err)
		}
		if first != uint64(len(want)+1) || last != first+1 {
			t.Fatalf("batch %d at %d..%d, want %d..%d", b, first, last, len(want)+1, len(want)+2)
		}
		want = append(want, batch...)
	}
	if got := l.Committed(); got != 6 {
		t.Fatalf("committed %d, want 6", got)
	}
	assertRecords(t, readN(t, l, 1, 6), want)
	_ = l.Close()

	ns.stop()
	ns.start()
	l2 := open(t, testConfig(ns.url()))
	if got := l2.Committed(); got != 6 {
		t.Fatalf("committed after restart %d, want 6", got)
	}
	assertRecords(t, readN(t, l2, 1, 6), want)
	assertRecords(t, readN(t, l2, 4, 3), want[3:])
	first, _, err := l2.Append(t.Context(), [][]byte{event("cy", 7)})
	if err != nil || first != 7 {
		t.Fatalf("append after restart at %d (%v), want 7", first, err)
	}
	assertRecords(t, readN(t, l2, 7, 1), [][]byte{event("cy", 7)})
}

func assertRecords(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("record %d is %s, want %s", i, got[i], want[i])
		}
	}
}

// Concurrent appends each get consecutive offsets, in their order, and
// the offsets of all of them cover the stream without a gap or overlap.
func TestConcurrentAppendsKeepBatchesInOrder(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	const writers, per = 8, 25
	type span struct {
		first, last uint64
		recs        [][]byte
	}
	spans := make([]span, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			recs := make([][]byte, per)
			for i := range recs {
				recs[i] = event(fmt.Sprintf("u%d-%d", w, i), i)
			}
			first, last, err := l.Append(t.Context(), recs)
			if err != nil {
				t.Error(err)
			}
			spans[w] = span{first, last, recs}
		})
	}
	wg.Wait()
	all := readN(t, l, 1, writers*per)
	seen := make([]bool, writers*per+1)
	for w, s := range spans {
		if s.last-s.first+1 != per {
			t.Fatalf("writer %d got offsets %d..%d for %d records", w, s.first, s.last, per)
		}
		for off := s.first; off <= s.last; off++ {
			if seen[off] {
				t.Fatalf("offset %d given twice", off)
			}
			seen[off] = true
		}
		assertRecords(t, all[s.first-1:s.last], s.recs)
	}
}

// When Append returns, the records are in the stream: another client
// reads them at the offsets Append gave.
func TestAppendReturnsAfterTheAck(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	stream, err := js.Stream(t.Context(), "CARTERA_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		rec := event("ann", i)
		_, last, err := l.Append(t.Context(), [][]byte{rec})
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.GetMsg(t.Context(), last)
		if err != nil {
			t.Fatalf("offset %d acknowledged but not in the stream: %v", last, err)
		}
		if string(m.Data) != string(rec) {
			t.Fatalf("offset %d holds %s, want %s", last, m.Data, rec)
		}
	}
}

func TestReadWaitsForAnAppend(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Read(ctx, 1, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("read on an empty stream with an ended context: %v", err)
	}

	type result struct {
		recs [][]byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		recs, err := l.Read(t.Context(), 1, 10)
		got <- result{recs, err}
	}()
	select {
	case r := <-got:
		t.Fatalf("read returned before any append: %d records, %v", len(r.recs), r.err)
	default:
	}
	if _, _, err := l.Append(t.Context(), [][]byte{event("ann", 1)}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	assertRecords(t, r.recs, [][]byte{event("ann", 1)})
}

// With the server down, Append fails and reports nothing durable; when it
// is back, appends and reads go on from where they were.
func TestServerDownAppendFailsThenRecovers(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	if _, _, err := l.Append(t.Context(), [][]byte{event("ann", 1), event("ann", 2)}); err != nil {
		t.Fatal(err)
	}
	assertRecords(t, readN(t, l, 1, 2), [][]byte{event("ann", 1), event("ann", 2)})

	ns.stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	_, _, err := l.Append(ctx, [][]byte{event("lost", 3)})
	cancel()
	if err == nil {
		t.Fatal("append with the server down succeeded")
	}
	if got := l.Committed(); got != 2 {
		t.Fatalf("committed %d with the server down, want 2", got)
	}

	ns.start()
	var last uint64
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, last, err = l.Append(ctx, [][]byte{event("ann", 4)})
		cancel()
		if err == nil {
			break
		}
		if try == 100 {
			t.Fatalf("append does not recover after the server restarted: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != 3 {
		t.Fatalf("append after recovery at %d, want 3 (the failed record must not be in the stream)", last)
	}
	// The reader resumes too, and never saw the unacknowledged record.
	assertRecords(t, readN(t, l, 3, 1), [][]byte{event("ann", 4)})
	assertRecords(t, readN(t, l, 1, 3), [][]byte{event("ann", 1), event("ann", 2), event("ann", 4)})
}

func TestPartitionsByIdentity(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	recs := [][]byte{
		[]byte(`{"type":"track","userId":"ann","anonymousId":"x1"}`),
		[]byte(`{"type":"track","userId":"ann"}`),
		[]byte(`{"type":"page","anonymousId":"x1"}`),
		[]byte(`{"type":"page","anonymousId":"x1"}`),
		[]byte(`{"type":"track","userId":"bob"}`),
	}
	first, _, err := l.Append(t.Context(), recs)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	stream, err := js.Stream(t.Context(), "CARTERA_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	subjects := make([]string, len(recs))
	for i := range recs {
		m, err := stream.GetMsg(t.Context(), first+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		subjects[i] = m.Subject
		if want := fmt.Sprintf("cartera.events.%d", l.Partition(recs[i])); m.Subject != want {
			t.Fatalf("record %d on %s, want %s", i, m.Subject, want)
		}
	}
	if subjects[0] != subjects[1] {
		t.Errorf("the same userId on %s and %s", subjects[0], subjects[1])
	}
	if subjects[2] != subjects[3] {
		t.Errorf("the same anonymousId on %s and %s", subjects[2], subjects[3])
	}
	// Keys spread: 64 users over 8 partitions use more than one.
	used := map[int]bool{}
	for i := range 64 {
		used[l.Partition(event(fmt.Sprintf("user-%d", i), 0))] = true
	}
	if len(used) < 4 {
		t.Errorf("64 users fall in %d of 8 partitions", len(used))
	}
}

func TestOpenChecksTheStream(t *testing.T) {
	ns := startNATS(t)
	cfg := testConfig(ns.url())
	cfg.FirstOffset = 101
	l := open(t, cfg)
	first, _, err := l.Append(t.Context(), [][]byte{event("ann", 1)})
	if err != nil || first != 101 {
		t.Fatalf("first append of a stream created at 101: offset %d, %v", first, err)
	}
	_ = l.Close()

	other := testConfig(ns.url())
	other.Partitions = 16
	if _, err := jetstream.Open(t.Context(), other); err == nil || !strings.Contains(err.Error(), "partitions") {
		t.Fatalf("open with another partition count: %v", err)
	}
	bad := testConfig(ns.url())
	bad.Stream = "a.b"
	if _, err := jetstream.Open(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "cluster.stream") {
		t.Fatalf("open with a bad stream name: %v", err)
	}
}

func TestTrim(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	var recs [][]byte
	for i := range 5 {
		recs = append(recs, event("ann", i))
	}
	if _, _, err := l.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if err := l.Trim(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	if first, err := l.FirstOffset(t.Context()); err != nil || first != 4 {
		t.Fatalf("first offset after trim %d (%v), want 4", first, err)
	}
	if _, err := l.Read(t.Context(), 2, 10); !errors.Is(err, jetstream.ErrTrimmed) {
		t.Fatalf("read below the trim: %v", err)
	}
	assertRecords(t, readN(t, l, 4, 2), recs[3:])
	if got := l.Committed(); got != 5 {
		t.Fatalf("committed after trim %d, want 5", got)
	}
}

// The largest record Append takes is the server's max_payload less the
// headers it is published with: that record is stored and read back
// whole, and one byte more is refused with ErrTooLarge before anything is
// published (not failed by the client as over max_payload, which a merge
// sized by MaxRecord would retry for ever).
func TestMaxRecordLeavesRoomForHeaders(t *testing.T) {
	s, err := newNATSServer(t.TempDir(), func(o *server.Options) { o.MaxPayload = 4 << 10 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	l := open(t, testConfig(s.ClientURL()))
	limit := l.MaxRecord()
	if limit >= 4<<10 || limit < 4<<10-100 {
		t.Fatalf("MaxRecord %d with max_payload %d", limit, 4<<10)
	}
	record := func(n int) []byte {
		prefix := `{"type":"track","userId":"ann","event":"`
		return []byte(prefix + strings.Repeat("x", n-len(prefix)-2) + `"}`)
	}
	first, _, err := l.Append(t.Context(), [][]byte{record(limit)})
	if err != nil {
		t.Fatalf("a record of MaxRecord (%d) bytes: %v", limit, err)
	}
	if got := readN(t, l, first, 1)[0]; len(got) != limit {
		t.Fatalf("read back %d bytes, want %d", len(got), limit)
	}
	for _, n := range []int{limit + 1, 4 << 10} {
		if _, _, err := l.Append(t.Context(), [][]byte{record(n)}); !errors.Is(err, jetstream.ErrTooLarge) {
			t.Fatalf("a record of %d bytes (MaxRecord %d): %v, want ErrTooLarge", n, limit, err)
		}
	}
}

// Retain trims applied records older than the retention, and the oldest
// while the stream is over its size cap, and never one not applied: the
// reader then finds the first kept record where it was, and an offset
// below it trimmed.
func TestRetain(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	appendN := func(from, n int) {
		var recs [][]byte
		for i := range n {
			recs = append(recs, event("ann", from+i))
		}
		if _, _, err := l.Append(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
	}
	appendN(1, 5)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	appendN(6, 5)
	first := func() uint64 {
		f, err := l.FirstOffset(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	week := jetstream.Retention{Age: 7 * 24 * time.Hour}
	for _, c := range []struct {
		name      string
		applied   uint64
		r         jetstream.Retention
		now       time.Time
		trimmed   uint64
		wantFirst uint64
	}{
		{"nothing applied, all old", 0, jetstream.Retention{}, time.Now().Add(time.Hour), 0, 1},
		{"applied, all within the week", 8, week, time.Now(), 0, 1},
		{"the first five older than an hour, eight applied", 8, jetstream.Retention{Age: time.Hour}, between.Add(time.Hour), 5, 6},
		{"all older, only what is applied", 8, jetstream.Retention{Age: time.Hour}, time.Now().Add(2 * time.Hour), 3, 9},
		{"over the cap, within the week: the oldest", 10, jetstream.Retention{Age: week.Age, MaxBytes: 1}, time.Now(), 2, 11},
	} {
		n, err := l.Retain(t.Context(), c.applied, c.r, c.now)
		if err != nil || n != c.trimmed || first() != c.wantFirst {
			t.Fatalf("%s: trimmed %d (%v), first %d; want %d trimmed, first %d", c.name, n, err, first(), c.trimmed, c.wantFirst)
		}
	}
	appendN(11, 1)
	if got := readN(t, l, 11, 1); string(got[0]) != string(event("ann", 11)) {
		t.Fatalf("read at 11 after the trims: %s", got[0])
	}
	if _, err := l.Read(t.Context(), 10, 1); !errors.Is(err, jetstream.ErrTrimmed) {
		t.Fatalf("read below the first kept: %v, want ErrTrimmed", err)
	}
}
