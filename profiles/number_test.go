package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// Trait numbers keep their JSON form across a restart, so a condition sees
// the same int or double before and after.
func TestTraitNumbersSurviveRestart(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(identify("m1", user("u1"), traits("age", json.Number("30"), "score", json.Number("0.5"))))
	ts.reopen()
	p := ts.lookup(KindUserID, "u1")
	for k, want := range map[string]json.Number{"age": "30", "score": "0.5"} {
		if got, ok := p.Traits[k].Value.(json.Number); !ok || got != want {
			t.Errorf("traits.%s = %#v after restart, want json.Number(%s)", k, p.Traits[k].Value, want)
		}
	}
}

func TestDecodeRefusesOutOfRangeNumbers(t *testing.T) {
	_, err := Decode([]byte(`{"userId":"u1","event":"Order Completed","properties":{"revenue":1e400}}`), DecodeOptions{Type: TypeTrack})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Error() != "properties.revenue: number 1e400 is out of range" {
		t.Fatalf("err = %v", err)
	}
	plan := &Plan{Mode: PlanStrict, Events: map[string]EventRule{"Scored": {Properties: map[string]PropertyRule{"points": {Type: "number"}}}}}
	e, err := Decode([]byte(`{"userId":"u1","event":"Scored","properties":{"points":-1e999}}`), DecodeOptions{Type: TypeTrack})
	if err != nil {
		t.Fatal(err)
	}
	if vs := plan.Check(e); len(vs) != 1 || vs[0].Field != "properties.points" {
		t.Fatalf("violations = %v, want properties.points", vs)
	}
}

// Ingest after Close answers ErrClosed rather than waiting forever.
func TestIngestAfterCloseReturns(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ts.Ingest(ctx, []*Event{identify("m1", user("u1"))}); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	ts.open() // for the cleanup's Close
}
