package profiles

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/bbolt"
)

// An erasure overwrites the pages that held the person: no byte of the
// email, the name or the anonymous id is left in the file, while another
// person's are.
func TestEraseScrubsFreePages(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(
		identify("m1", user("u1"), anon("a-gone-1"), traits("email", "gone.person@example.com", "name", "Gonzalo Gone")),
		track("m2", "Product Viewed", anon("a-gone-1")),
		identify("m3", user("u2"), traits("email", "stays@example.com")),
	)
	before := readFile(t, ts.Store)
	if !bytes.Contains(before, []byte("gone.person@example.com")) {
		t.Fatal("setup: the email is not in the file to begin with")
	}
	er, err := ts.Erase(Identifier{Kind: KindUserID, Value: "u1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !er.Scrubbed {
		t.Error("Erasure.Scrubbed = false")
	}
	raw := readFile(t, ts.Store)
	for _, s := range []string{"gone.person@example.com", "Gonzalo Gone", "a-gone-1"} {
		if n := bytes.Count(raw, []byte(s)); n > 0 {
			t.Errorf("after the erasure the file holds %q %d times", s, n)
		}
	}
	if !bytes.Contains(raw, []byte("stays@example.com")) {
		t.Error("the scrub lost a person who was not erased")
	}
	if testutil.ToFloat64(ts.metrics.ScrubbedPages) == 0 {
		t.Error("no scrubbed pages counted")
	}
	if got := len(checkGraph(t, ts.Store)); got != 1 {
		t.Errorf("%d profiles after the scrub, want the one not erased", got)
	}
	if err := ts.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("bbolt consistency check after the scrub: %v", err)
	}
}

// A read transaction that began before pages were freed may still read
// them: the scrub waits for it, and gives up when it outlives the wait.
func TestScrubWaitsForOpenReaders(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(identify("m1", user("u1"), traits("email", "reader@example.com")))
	tx, err := ts.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Scrub(20 * time.Millisecond); !errors.Is(err, errReadersOpen) {
		t.Errorf("Scrub with a reader open: %v, want %v", err, errReadersOpen)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = tx.Rollback()
	}()
	if _, err := ts.Scrub(5 * time.Second); err != nil {
		t.Errorf("Scrub once the reader ended: %v", err)
	}
}

func readFile(t *testing.T, s *Store) []byte {
	t.Helper()
	raw, err := os.ReadFile(s.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// BenchmarkEraseAndScrub is one erasure with its scrub in a store of 50,000
// people: the scrub looks up the type of every page of the file, so its
// cost grows with the file (reported as MB).
func BenchmarkEraseAndScrub(b *testing.B) {
	ts := openStore(b, DefaultConfig())
	const people = 50_000
	batch := make([]*Event, 0, 1000)
	for i := range people {
		batch = append(batch, identify(fmt.Sprintf("m%d", i), user(fmt.Sprintf("u%d", i)), traits("email", fmt.Sprintf("person%d@example.com", i))))
		if len(batch) == cap(batch) {
			ts.ingest(batch...)
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := ts.Erase(Identifier{Kind: KindUserID, Value: fmt.Sprintf("u%d", i%people)}, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if fi, err := os.Stat(ts.db.Path()); err == nil {
		b.ReportMetric(float64(fi.Size())/1e6, "MB")
	}
}
