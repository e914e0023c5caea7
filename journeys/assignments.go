package journeys

// A person's experiment assignments, all in one record: the sidecar
// sidecarExpRecord of the profile holds every arm the person was given
// (one per journey and experiment) and the ledger of arms that lost to
// them in merges. A run reads a person's record once, changes it in
// memory, and writes it once, at its flush: entering a hundred splits
// costs one put of the record, not a hundred inserts of a key each.
//
// Earlier versions kept one sidecar per assignment ("x" 0x00 journey 0x00
// experiment) and one per ledger entry ("xm" 0x00 journey 0x00 experiment
// 0x00 merged-away id). In a store an earlier version wrote with
// experiments (migrate.go: no layout mark), both are still read, beside
// the record (the three names share the prefix sidecarExpTag, so one scan
// finds them all), and a record written for the person replaces them. A
// store without that past reads the record alone, with one Get.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cartera/internal/codec"
	"cartera/profiles"
)

// Sidecar names of the experiment records: sidecarExpTag is the prefix
// they share, sidecarExpRecord the record, sidecarExperiment and
// sidecarExpLedger (prefixes) the layout of earlier versions.
//
//	"xa" → codec.Format1, the number of entries, then each entry: journey
//	       id, experiment, merged-away profile id ("" for an arm in force),
//	       variant, assigned at (unix nanoseconds, varint), converted,
//	       revenue in cents. Entries are in order of journey, experiment,
//	       merged-away id.
const (
	sidecarExpTag     = "x"
	sidecarExpRecord  = "xa"
	sidecarExperiment = "x\x00"
	sidecarExpLedger  = "xm\x00"
)

// expEntry is one assignment of a person's record: in force when
// mergedFrom is empty, else a ledger entry (the arm the merged-away
// profile mergedFrom had).
type expEntry struct {
	journey, experiment, mergedFrom string
	assignment
}

func cmpEntry(e *expEntry, journey, experiment, mergedFrom string) int {
	if c := strings.Compare(e.journey, journey); c != 0 {
		return c
	}
	if c := strings.Compare(e.experiment, experiment); c != 0 {
		return c
	}
	return strings.Compare(e.mergedFrom, mergedFrom)
}

// expRecord is a person's record as a run holds it.
type expRecord struct {
	// list is in order: journey, experiment, mergedFrom. Pointers, so
	// that an insertion among a hundred entries (an event entering a
	// hundred splits) moves pointers, not entries.
	list []*expEntry
	// dirty says the run has it other than the store does (changed, or
	// read from the old layout, which the write replaces); old names the
	// old layout's sidecars read.
	dirty bool
	old   []string
	// stored says the profile has the record's key in the store (or this
	// transaction put it there): writing it at the flush replaces a
	// value, rather than inserting a key into a leaf the transaction
	// has filled with other people's records (bbolt moves every key
	// after it: the history's regression, docs/benchmarks.md).
	stored bool
	// inline holds the first entries (used of them), and ptrs the list's
	// first pointers, in the record's allocation: most people are in a
	// few experiments.
	inline [2]expEntry
	used   int
	ptrs   [2]*expEntry
}

func newExpRecord() *expRecord {
	x := &expRecord{}
	x.list = x.ptrs[:0]
	return x
}

// adopt appends decoded entries to the list (in order, after those
// there).
func (x *expRecord) adopt(es []expEntry) {
	for i := range es {
		x.list = append(x.list, &es[i])
	}
}

// decode appends a stored record's entries to the list, into the
// record's inline entries when they fit.
func (x *expRecord) decode(v []byte) error {
	into := []expEntry(nil)
	if x.used == 0 {
		into = x.inline[:0:len(x.inline)]
	}
	es, err := decodeExpRecord(v, into)
	if x.used == 0 && len(es) <= len(x.inline) {
		x.used = len(es)
	}
	x.adopt(es)
	return err
}

// find returns the index of an entry, or where it would go.
func (x *expRecord) find(journey, experiment, mergedFrom string) (int, bool) {
	return slices.BinarySearchFunc(x.list, 0, func(e *expEntry, _ int) int {
		return cmpEntry(e, journey, experiment, mergedFrom)
	})
}

// live returns the person's arm in force in an experiment, or nil.
func (x *expRecord) live(journey, experiment string) *expEntry {
	if i, ok := x.find(journey, experiment, ""); ok {
		return x.list[i]
	}
	return nil
}

// add inserts an entry unless one with its journey, experiment and
// mergedFrom is there already, and reports whether it did.
func (x *expRecord) add(e expEntry) bool {
	i, ok := x.find(e.journey, e.experiment, e.mergedFrom)
	if ok {
		return false
	}
	var p *expEntry
	if x.used < len(x.inline) {
		p = &x.inline[x.used]
		x.used++
	} else {
		p = new(expEntry)
	}
	*p = e
	x.list = slices.Insert(x.list, i, p)
	x.dirty = true
	return true
}

// encode appends the record to b.
func (x *expRecord) encode(b []byte) []byte {
	w := &codec.Writer{B: b}
	w.B = append(w.B, codec.Format1)
	w.Uvarint(uint64(len(x.list)))
	for _, e := range x.list {
		w.String(e.journey)
		w.String(e.experiment)
		w.String(e.mergedFrom)
		w.String(e.Variant)
		w.Varint(e.At.UnixNano())
		w.Bool(e.Converted)
		w.Varint(e.RevenueCents)
	}
	return w.B
}

// decodeExpRecord appends the entries of a stored record to list. Their
// strings share one copy of the record.
func decodeExpRecord(v []byte, list []expEntry) ([]expEntry, error) {
	if len(v) == 0 || v[0] != codec.Format1 {
		return list, fmt.Errorf("experiment record: unknown format")
	}
	all := string(v)
	r := codec.NewReader(v)
	r.Byte()
	n := r.Uvarint()
	if r.Err() != nil || n > uint64(len(v)) {
		return list, fmt.Errorf("experiment record: corrupt length")
	}
	list = slices.Grow(list, int(n))
	for range n {
		e := expEntry{journey: r.StringIn(all), experiment: r.StringIn(all), mergedFrom: r.StringIn(all)}
		e.Variant, e.At, e.Converted, e.RevenueCents = r.StringIn(all), time.Unix(0, r.Varint()).UTC(), r.Bool(), r.Varint()
		if r.Err() != nil {
			break
		}
		if len(list) > 0 && cmpEntry(&list[len(list)-1], e.journey, e.experiment, e.mergedFrom) >= 0 {
			return list, fmt.Errorf("experiment record: entries out of order")
		}
		list = append(list, e)
	}
	if err := r.Done(); err != nil {
		return list, fmt.Errorf("experiment record: %w", err)
	}
	return list, nil
}

// readExpRecord reads a person's record, with any assignment of the old
// layout folded in when the store may hold some (the record's own entries
// win; none should clash).
func readExpRecord(sc profiles.Sidecars, profileID string, oldLayout bool) (*expRecord, error) {
	x := newExpRecord()
	if !oldLayout {
		v := sc.Get(profileID, sidecarExpRecord)
		if v == nil {
			return x, nil
		}
		x.stored = true
		if err := x.decode(v); err != nil {
			return nil, fmt.Errorf("experiment record of %s: %w", profileID, err)
		}
		return x, nil
	}
	var old []expEntry
	err := sc.Scan(profileID, sidecarExpTag, func(name string, v []byte) error {
		var err error
		switch {
		case name == sidecarExpRecord:
			x.stored = true
			err = x.decode(v)
		case strings.HasPrefix(name, sidecarExperiment), strings.HasPrefix(name, sidecarExpLedger):
			var e expEntry
			e, err = decodeOldEntry(name, v)
			old = append(old, e)
			x.old = append(x.old, name)
		}
		if err != nil {
			return fmt.Errorf("experiment record %q of %s: %w", name, profileID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, e := range old {
		x.add(e)
	}
	x.dirty = len(x.old) > 0
	return x, nil
}

// decodeOldEntry reads a sidecar of the layout before the record: name is
// "x" 0x00 journey 0x00 experiment, or "xm" 0x00 journey 0x00 experiment
// 0x00 merged-away id.
func decodeOldEntry(name string, v []byte) (expEntry, error) {
	rest, ledger := strings.CutPrefix(name, sidecarExpLedger)
	if !ledger {
		rest = name[len(sidecarExperiment):]
	}
	parts := strings.SplitN(rest, "\x00", 3)
	if len(parts) != 2 && !ledger || len(parts) != 3 && ledger {
		return expEntry{}, fmt.Errorf("malformed name")
	}
	a, err := decodeAssignment(v)
	if err != nil {
		return expEntry{}, err
	}
	e := expEntry{journey: parts[0], experiment: parts[1], assignment: a}
	if ledger {
		e.mergedFrom = parts[2]
	}
	return e, nil
}

// experiments returns a person's record as this run has it, reading it
// the first time. The run holds the last person's record apart, and the
// others' only when the flush has to write them: a person whose record
// is only read, or put at once (place), costs no map entry.
func (r *run) experiments(profileID string) (*expRecord, error) {
	if r.last != nil && r.lastID == profileID {
		return r.last, nil
	}
	x := r.assigned[profileID]
	if x == nil {
		sc, err := r.sidecars()
		if err != nil {
			return nil, err
		}
		if x, err = readExpRecord(sc, profileID, r.oldExpLayout()); err != nil {
			return nil, err
		}
	}
	r.keepLast()
	r.lastID, r.last = profileID, x
	return x, nil
}

// keepLast moves the last person's record among those the flush writes
// if the run has it other than the store.
func (r *run) keepLast() {
	if r.last == nil || !r.last.dirty {
		return
	}
	if r.assigned == nil {
		r.assigned = map[string]*expRecord{}
	}
	r.assigned[r.lastID] = r.last
}

// forgetExperiments drops what the run holds of a person's record (merged
// away or erased: nothing of theirs is to be written).
func (r *run) forgetExperiments(profileID string) {
	delete(r.assigned, profileID)
	if r.lastID == profileID {
		r.lastID, r.last = "", nil
	}
}

// place puts a new record in the store at once, as it is now: so that
// the flush, if the run changes it again, replaces a value instead of
// inserting a key; and if it does not (a person in one experiment, the
// common case), the flush has nothing to write.
func (r *run) place(profileID string, x *expRecord) error {
	if x.stored {
		return nil
	}
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	x.stored = true
	// The store now holds what the run does, but for the old layout's
	// sidecars, which the flush removes.
	x.dirty = len(x.old) > 0
	return sc.Put(profileID, sidecarExpRecord, x.encode(nil))
}

// dropExperiments removes a person's record and any sidecar of the old
// layout, and forgets them (a profile merged away).
func (r *run) dropExperiments(profileID string, x *expRecord) error {
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	for _, name := range append(x.old, sidecarExpRecord) {
		if err := sc.Delete(profileID, name); err != nil {
			return err
		}
	}
	r.forgetExperiments(profileID)
	return nil
}

// flushAssignments writes the records this run changed, in profile order,
// and removes the old layout's sidecars they replace. An erased person's
// is not written (the erasure removes the profile's sidecars).
func (r *run) flushAssignments() error {
	r.keepLast()
	r.lastID, r.last = "", nil
	if len(r.assigned) == 0 {
		return nil
	}
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	// The values in one block (bbolt keeps a value until the commit),
	// each capped so that the next does not grow into it.
	var block []byte
	for _, id := range slices.Sorted(maps.Keys(r.assigned)) {
		x := r.assigned[id]
		if !x.dirty || r.erased[id] {
			continue
		}
		for _, name := range x.old {
			if err := sc.Delete(id, name); err != nil {
				return err
			}
		}
		if len(x.list) == 0 {
			if err := sc.Delete(id, sidecarExpRecord); err != nil {
				return err
			}
			continue
		}
		if cap(block)-len(block) < 64*len(x.list) {
			block = make([]byte, 0, max(4096, 2*64*len(x.list)))
		}
		start := len(block)
		block = x.encode(block)
		if err := sc.Put(id, sidecarExpRecord, block[start:len(block):len(block)]); err != nil {
			return err
		}
	}
	clear(r.assigned)
	return nil
}

// assignmentsOf lists a record's entries for the profile API: the arms in
// force, then the ledger.
func assignmentsOf(x *expRecord) []Assignment {
	var out, ledger []Assignment
	for _, e := range x.list {
		a := Assignment{Journey: e.journey, Experiment: strings.TrimPrefix(e.experiment, "@"), Variant: e.Variant,
			AssignedAt: e.At, Converted: e.Converted, MergedFrom: e.mergedFrom}
		if e.mergedFrom == "" {
			out = append(out, a)
		} else {
			ledger = append(ledger, a)
		}
	}
	return append(out, ledger...)
}
