package main

import "testing"

func TestProcsFor(t *testing.T) {
	for _, c := range []struct {
		env         string
		procs, want int
	}{
		{"", 2, 4},
		{"", 1, 2},
		{"", 8, 16},
		{"", 0, 2},  // never below one per CPU
		{"3", 2, 0}, // the operator's choice stands
		{"1", 8, 0},
	} {
		if got := procsFor(c.env, c.procs); got != c.want {
			t.Errorf("procsFor(%q, %d) = %d, want %d", c.env, c.procs, got, c.want)
		}
	}
}
