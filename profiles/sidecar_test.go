package profiles

import (
	"fmt"
	"slices"
	"testing"

	"go.etcd.io/bbolt"
)

func TestSidecars(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(identify("m1", user("u1")), identify("m2", user("u2")))
	a, b := ts.lookup(KindUserID, "u1").ID, ts.lookup(KindUserID, "u2").ID

	err := ts.DB().Update(func(tx *bbolt.Tx) error {
		sc, err := SidecarsIn(tx)
		if err != nil {
			return err
		}
		for _, w := range []struct{ id, name, v string }{
			{a, "x\x00two", "2"}, {a, "x\x00one", "1"}, {a, "y", "why"}, {b, "x\x00one", "b1"},
		} {
			if err := sc.Put(w.id, w.name, []byte(w.v)); err != nil {
				return err
			}
		}
		if got := string(sc.Get(a, "y")); got != "why" {
			t.Errorf("Get(a, y) = %q, want why", got)
		}
		if got := sc.Get(a, "nope"); got != nil {
			t.Errorf("Get(a, nope) = %q, want nil", got)
		}
		var seen []string
		err = sc.Scan(a, "x\x00", func(name string, v []byte) error {
			seen = append(seen, fmt.Sprintf("%q=%s", name, v))
			return nil
		})
		if err != nil {
			return err
		}
		// Key order, this profile only, this prefix only.
		if want := []string{`"x\x00one"=1`, `"x\x00two"=2`}; !slices.Equal(seen, want) {
			t.Errorf("Scan(a, x) = %v, want %v", seen, want)
		}
		// A Scan and a Get within a Scan leave it on its way (they build
		// their keys apart from its own).
		seen = seen[:0]
		err = sc.Scan(a, "x\x00", func(name string, v []byte) error {
			var inner []string
			err := sc.Scan(b, "x\x00", func(name string, v []byte) error {
				inner = append(inner, string(v))
				return nil
			})
			if !slices.Equal(inner, []string{"b1"}) || string(sc.Get(b, "x\x00one")) != "b1" {
				t.Errorf("Scan(b) within Scan(a) = %v, %v", inner, err)
			}
			seen = append(seen, string(v))
			return err
		})
		if err != nil || !slices.Equal(seen, []string{"1", "2"}) {
			t.Errorf("Scan(a, x) with a Scan(b, x) within = %v, %v; want [1 2]", seen, err)
		}
		return sc.Delete(a, "x\x00one")
	})
	if err != nil {
		t.Fatal(err)
	}

	// The profile records are untouched by their sidecars, and listing
	// profiles skips sidecars.
	if p := ts.lookup(KindUserID, "u1"); p.ID != a {
		t.Errorf("u1 is %s, want %s", p.ID, a)
	}
	ids, err := ts.ScanIDs("", 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values([]string{a, b})); !slices.Equal(ids, want) {
		t.Errorf("ScanIDs = %v, want %v", ids, want)
	}
	// Starting after the first profile steps over its sidecars.
	if rest, err := ts.ScanIDs(ids[0], 10); err != nil || !slices.Equal(rest, ids[1:]) {
		t.Errorf("ScanIDs(%s) = %v, %v; want %v", ids[0], rest, err, ids[1:])
	}
	_ = ts.DB().View(func(tx *bbolt.Tx) error {
		sc, _ := SidecarsIn(tx)
		if v := sc.Get(a, "x\x00one"); v != nil {
			t.Errorf("deleted sidecar still there: %q", v)
		}
		return nil
	})
}

func TestMigrateToSidecars(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(identify("m1", user("u1")))
	pid := ts.lookup(KindUserID, "u1").ID
	old := []byte("old_records")
	err := ts.DB().Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(old)
		if err != nil {
			return err
		}
		for i := range 10 {
			if err := b.Put(fmt.Appendf(nil, "%s\x00k%02d", pid, i), fmt.Appendf(nil, "v%d", i)); err != nil {
				return err
			}
		}
		// A record of a profile that is gone (earlier versions left
		// journey entries behind an erasure) is dropped, not moved.
		if err := b.Put([]byte("0123456789abcdef01234567\x00k99"), []byte("orphan")); err != nil {
			return err
		}
		return b.Put([]byte("stray"), []byte("left behind"))
	})
	if err != nil {
		t.Fatal(err)
	}
	name := func(k []byte) (string, string, bool) {
		if len(k) < idLen+1 {
			return "", "", false
		}
		return string(k[:idLen]), "x\x00" + string(k[idLen+1:]), true
	}
	// Chunks of 3: four transactions, the last one dropping the bucket.
	moved, err := migrateToSidecars(ts.DB(), old, name, 3)
	if err != nil || moved != 10 {
		t.Fatalf("migrate = %d, %v; want 10 moved", moved, err)
	}
	_ = ts.DB().View(func(tx *bbolt.Tx) error {
		if tx.Bucket(old) != nil {
			t.Error("old bucket kept after the migration")
		}
		sc, _ := SidecarsIn(tx)
		n := 0
		_ = sc.Scan(pid, "x\x00", func(name string, v []byte) error {
			if want := fmt.Sprintf("x\x00k%02d", n); name != want || string(v) != fmt.Sprintf("v%d", n) {
				t.Errorf("sidecar %d = %q=%q, want %q=v%d", n, name, v, want, n)
			}
			n++
			return nil
		})
		if n != 10 {
			t.Errorf("%d sidecars after migration, want 10", n)
		}
		if v := sc.Get("0123456789abcdef01234567", "x\x00k99"); v != nil {
			t.Errorf("the record of a missing profile was moved: %q", v)
		}
		return nil
	})
	// Again: nothing left to move.
	if moved, err := migrateToSidecars(ts.DB(), old, name, 3); err != nil || moved != 0 {
		t.Errorf("second migration = %d, %v; want 0, nil", moved, err)
	}
	// The store still reads its profile after the migration and a restart.
	ts.reopen()
	if p := ts.lookup(KindUserID, "u1"); p.ID != pid {
		t.Errorf("u1 = %s after migration, want %s", p.ID, pid)
	}
}
