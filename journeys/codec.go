package journeys

import (
	"bytes"
	"encoding/json"

	"cartera/internal/codec"
)

// encodeInstance is the stored form of an instance: codec.Format1, then
// the fields in order. Instances written as JSON by earlier versions still
// decode (decodeInstance tells them apart by the first byte).
func encodeInstance(in *Instance) ([]byte, error) {
	w := &codec.Writer{B: make([]byte, 0, 256)}
	w.B = append(w.B, codec.Format1)
	w.Uvarint(in.ID)
	w.String(in.Journey)
	w.String(in.Version)
	w.String(in.ProfileID)
	w.String(in.Key)
	w.String(in.Step)
	w.Bool(in.Done)
	w.Bool(in.Trigger != nil)
	if t := in.Trigger; t != nil {
		w.String(t.Name)
		w.String(t.Type)
		w.String(t.Source)
		w.String(t.MessageID)
		if err := w.Map(t.Properties); err != nil {
			return nil, err
		}
		w.Time(t.Timestamp)
	}
	w.Time(in.EnteredAt)
	w.Bytes(in.Timer)
	w.Len(len(in.Audiences), in.Audiences == nil)
	for _, a := range in.Audiences {
		w.String(a)
	}
	w.String(in.Variant)
	w.Bool(in.Converted)
	w.Len(len(in.Steps), in.Steps == nil)
	for k, n := range in.Steps {
		w.String(k)
		w.Int(n)
	}
	return w.B, nil
}

// decodeInstance reads a stored instance in either form.
func decodeInstance(v []byte, in *Instance) error {
	if len(v) == 0 || v[0] != codec.Format1 {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		return dec.Decode(in)
	}
	r := codec.NewReader(v[1:])
	in.ID = r.Uvarint()
	in.Journey, in.Version, in.ProfileID, in.Key, in.Step = r.String(), r.String(), r.String(), r.String(), r.String()
	in.Done = r.Bool()
	if r.Bool() {
		in.Trigger = &TriggerRecord{Name: r.String(), Type: r.String(), Source: r.String(), MessageID: r.String(), Properties: r.Map(), Timestamp: r.Time()}
	}
	in.EnteredAt = r.Time()
	in.Timer = r.Bytes()
	if n, isNil := r.Len(); !isNil {
		in.Audiences = make([]string, n)
		for i := range in.Audiences {
			in.Audiences[i] = r.String()
		}
	}
	in.Variant = r.String()
	in.Converted = r.Bool()
	if n, isNil := r.Len(); !isNil {
		in.Steps = make(map[string]int, n)
		for range n {
			k := r.String()
			in.Steps[k] = r.Int()
		}
	}
	return r.Done()
}

// encodeEntry is the stored form of an entry record (binary, as instances).
func encodeEntry(rec entryRecord) []byte {
	w := &codec.Writer{B: make([]byte, 0, 24)}
	w.B = append(w.B, codec.Format1)
	w.Time(rec.LastEntered)
	w.Int(rec.Entries)
	return w.B
}

// decodeEntry reads a stored entry record in either form.
func decodeEntry(v []byte, rec *entryRecord) error {
	if len(v) == 0 || v[0] != codec.Format1 {
		return json.Unmarshal(v, rec)
	}
	r := codec.NewReader(v[1:])
	rec.LastEntered = r.Time()
	rec.Entries = r.Int()
	return r.Done()
}
