package wallet_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/bbolt"

	"cartera/profiles"
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

// A person's passes and their devices move with them to another partition
// (a merge across partitions): the file they leave forgets them, with no
// void and no push; the file they reach keeps them under the same serials,
// tokens and tags, counted, and the merge into the survivor (Merged) gives
// them to the survivor there.
func TestPassesMoveWithTheirPerson(t *testing.T) {
	old := newHarness(t)
	ctx := context.Background()
	id, p := old.issue("u1")
	ptid := old.chain.PassTypeID
	if _, err := old.svc.Register(ctx, "dev1", ptid, p.Serial, p.Token, "aaaa"); err != nil {
		t.Fatal(err)
	}
	var state []byte
	err := old.store.DB().View(func(tx *bbolt.Tx) error {
		var err error
		state, err = old.svc.ExportPerson(tx, id)
		return err
	})
	if err != nil || state == nil {
		t.Fatalf("export: %s, %v", state, err)
	}
	pushes := len(old.queue.take())
	err = old.store.DB().Update(func(tx *bbolt.Tx) error {
		w := old.svc.Begin(tx)
		if err := w.(profiles.TxPersonMover).MovedOut(id); err != nil {
			return err
		}
		return w.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.svc.Authorize(ptid, p.Serial, p.Token); err == nil {
		t.Error("the pass is still known where its person left")
	}
	if st, _ := old.svc.Stats(); st.Devices != 0 || len(st.Passes) != 1 || st.Passes[0].Live != 0 {
		t.Errorf("counts where the person left: %+v, want no device and no pass", st)
	}
	if n := len(old.queue.take()); n != 0 {
		t.Errorf("%d pushes queued by the move (and %d before), want none", n, pushes)
	}

	next := newHarness(t)
	loser := next.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "u1-elsewhere"})
	err = next.store.DB().Update(func(tx *bbolt.Tx) error {
		return next.svc.Begin(tx).(profiles.TxPersonMover).ImportPerson(loser, state)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := next.svc.Authorize(ptid, p.Serial, p.Token)
	if err != nil || got.ProfileID != loser || got.Tag != p.Tag {
		t.Fatalf("the moved pass: %+v, %v; want it under %s at tag %d", got, err, loser, p.Tag)
	}
	if serials, _, err := next.svc.Updated("dev1", ptid, ""); err != nil || !slices.Equal(serials, []string{p.Serial}) {
		t.Errorf("dev1's passes where the person went: %v, %v", serials, err)
	}
	if st, _ := next.svc.Stats(); st.Devices != 1 || len(st.Passes) != 1 || st.Passes[0].Live != 1 {
		t.Errorf("counts where the person went: %+v, want a device and a pass", st)
	}
}
