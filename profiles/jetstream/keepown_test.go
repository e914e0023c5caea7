package jetstream

import (
	"testing"

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
