package wallet_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/bbolt"

	"cartera/wallet"
)

// A pass issued and the devices registered and removed through the web
// service are noted for the next owner of a cluster node's partition. A
// new owner, restored from a snapshot taken before them, applies the
// notes (twice changes nothing more): the phone's requests about the pass
// are authorized, the device that stayed gets its updates, the counters
// are right, and the passes and devices it makes itself are numbered
// after the noted ones.
func TestNotesCarryPassesAndDevices(t *testing.T) {
	type note struct {
		pid, kind string
		body      []byte
	}
	var mu sync.Mutex
	var notes []note
	noter := func(_ context.Context, pid, kind string, body []byte) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		notes = append(notes, note{pid, kind, body})
		return true, nil
	}
	old := newHarnessNoting(t, nil, noter)
	ctx := context.Background()
	id, p := old.issue("u1")
	ptid := old.chain.PassTypeID
	for _, dev := range []string{"dev1", "dev2"} {
		if _, err := old.svc.Register(ctx, dev, ptid, p.Serial, p.Token, "aaaa"); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.svc.Unregister(ctx, "dev2", ptid, p.Serial, p.Token); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, n := range notes {
		if n.pid != id {
			t.Errorf("a %s note placed by %s, want the pass's person %s", n.kind, n.pid, id)
		}
		kinds = append(kinds, n.kind)
	}
	if want := []string{wallet.NotePass, wallet.NoteDevice, wallet.NoteDevice, wallet.NoteDevice}; !slices.Equal(kinds, want) {
		t.Fatalf("notes %q, want %q", kinds, want)
	}

	next := newHarness(t)
	if next.chain.PassTypeID != ptid {
		t.Fatalf("pass type %s, want %s", next.chain.PassTypeID, ptid)
	}
	for range 2 {
		err := next.store.DB().Update(func(tx *bbolt.Tx) error {
			for _, n := range notes {
				if err := next.svc.ApplyNote(n.kind)(tx, n.body); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := next.svc.Authorize(ptid, p.Serial, p.Token); err != nil {
		t.Fatalf("the noted pass is not authorized on its new owner: %v", err)
	}
	for dev, want := range map[string][]string{"dev1": {p.Serial}, "dev2": nil} {
		serials, _, err := next.svc.Updated(dev, ptid, "")
		if err != nil || !slices.Equal(serials, want) {
			t.Errorf("%s's passes on the new owner: %v, %v; want %v", dev, serials, err, want)
		}
	}
	st, err := next.svc.Stats()
	if err != nil {
		t.Fatal(err)
	}
	passes := int64(0)
	for _, c := range st.Passes {
		passes += c.Live
	}
	if st.Devices != 1 || passes != 1 {
		t.Errorf("new owner counts %d devices and %d passes, want 1 and 1", st.Devices, passes)
	}
	_, p2 := next.issue("u2")
	if p2.Tag <= p.Tag {
		t.Errorf("a pass issued on the new owner has tag %d, not after the noted pass's %d", p2.Tag, p.Tag)
	}

	if err := next.store.DB().Update(func(tx *bbolt.Tx) error { return next.svc.ApplyNote("wallet.other")(tx, nil) }); err == nil {
		t.Error("a note of an unknown kind was applied")
	}
}
