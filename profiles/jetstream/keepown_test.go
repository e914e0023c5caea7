package jetstream

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"cartera/profiles"
)

func TestKeepOwn(t *testing.T) {
	tests := []struct {
		name      string
		own, snap profiles.PartitionState
		keep      bool
	}{
		{"no file", profiles.PartitionState{}, profiles.PartitionState{Offset: 10, Epoch: "e1"}, false},
		{"same line, further along", profiles.PartitionState{Offset: 12, Epoch: "e1"}, profiles.PartitionState{Offset: 10, Epoch: "e1"}, true},
		{"same line, as far", profiles.PartitionState{Offset: 10, Epoch: "e1"}, profiles.PartitionState{Offset: 10, Epoch: "e1"}, true},
		{"same line, behind", profiles.PartitionState{Offset: 8, Epoch: "e1"}, profiles.PartitionState{Offset: 10, Epoch: "e1"}, false},
		{"other line, further along", profiles.PartitionState{Offset: 12, Epoch: "e1"}, profiles.PartitionState{Offset: 10, Epoch: "e2"}, false},
		{"file without an epoch", profiles.PartitionState{Offset: 12}, profiles.PartitionState{Offset: 10}, false},
	}
	for _, tc := range tests {
		if got := keepOwn(tc.own, tc.snap); got != tc.keep {
			t.Errorf("%s: keepOwn(%+v, %+v) = %v, want %v", tc.name, tc.own, tc.snap, got, tc.keep)
		}
	}
}

// A hand-over's snapshot is tried again after a failure, pausing longer
// each time, up to its tries; a fenced partition is not tried again.
func TestRetry(t *testing.T) {
	errUpload := errors.New("nats: API error: code=429")
	fenced := fmt.Errorf("%w: partition 3", profiles.ErrFenced)
	tests := []struct {
		name    string
		results []error // what each call returns
		calls   int
		pauses  []time.Duration
		want    error
	}{
		{"first try", []error{nil}, 1, nil, nil},
		{"second try", []error{errUpload, nil}, 2, []time.Duration{time.Second}, nil},
		{"all fail", []error{errUpload, errUpload, errUpload, nil}, 3, []time.Duration{time.Second, 2 * time.Second}, errUpload},
		{"fenced", []error{fenced, nil}, 1, nil, fenced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls, failures int
			var pauses []time.Duration
			err := retry(3, func(d time.Duration) { pauses = append(pauses, d) }, func() error {
				calls++
				return tc.results[calls-1]
			}, func(error, int) { failures++ })
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
			if calls != tc.calls || !slices.Equal(pauses, tc.pauses) || failures != len(tc.pauses) {
				t.Errorf("%d calls, pauses %v, %d failures heard; want %d, %v", calls, pauses, failures, tc.calls, tc.pauses)
			}
		})
	}
}
