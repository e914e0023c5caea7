package jetstream

import (
	"fmt"
	"slices"
	"testing"
)

func nodeIDs(n int) []string {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("node-%d", i))
	}
	slices.Sort(ids)
	return ids
}

// Every partition has one owner, the shares differ by one at most, and
// the table depends only on the members.
func TestAssignIsEvenAndDeterministic(t *testing.T) {
	for _, partitions := range []int{1, 8, 64} {
		for n := 1; n <= 7; n++ {
			t.Run(fmt.Sprintf("%d partitions on %d nodes", partitions, n), func(t *testing.T) {
				members := nodeIDs(n)
				got := owners(members, partitions)
				count := map[string]int{}
				for p, o := range got {
					if !slices.Contains(members, o) {
						t.Fatalf("partition %d owned by %q, not a member", p, o)
					}
					count[o]++
				}
				lo, hi := partitions, 0
				for _, m := range members {
					lo, hi = min(lo, count[m]), max(hi, count[m])
				}
				if hi-lo > 1 {
					t.Fatalf("shares from %d to %d: %v", lo, hi, count)
				}
				if again := owners(slices.Clone(members), partitions); !slices.Equal(got, again) {
					t.Fatal("the same members give another table")
				}
				total := 0
				for _, m := range members {
					total += len(assign(members, partitions, m))
				}
				if total != partitions {
					t.Fatalf("assign gives %d partitions in all, want %d", total, partitions)
				}
			})
		}
	}
}

// A node leaving or joining moves far fewer partitions than dealing them
// round-robin would (which moves most of them).
func TestAssignMovesFew(t *testing.T) {
	const partitions = 64
	moved := func(a, b []string) int {
		n := 0
		for p := range a {
			if a[p] != b[p] {
				n++
			}
		}
		return n
	}
	roundRobin := func(members []string) []string {
		out := make([]string, partitions)
		for p := range out {
			out[p] = members[p%len(members)]
		}
		return out
	}
	for n := 2; n <= 6; n++ {
		before, after := nodeIDs(n), nodeIDs(n+1)
		join := moved(owners(before, partitions), owners(after, partitions))
		rr := moved(roundRobin(before), roundRobin(after))
		// The least a join can move is the newcomer's share.
		if least := partitions / (n + 1); join < least || join > 2*least+n {
			t.Errorf("%d → %d nodes moves %d partitions, want between %d and %d (round-robin: %d)", n, n+1, join, least, 2*least+n, rr)
		}
		if join >= rr {
			t.Errorf("%d → %d nodes moves %d partitions, round-robin %d", n, n+1, join, rr)
		}
		t.Logf("%d → %d nodes: %d of %d partitions move (round-robin: %d)", n, n+1, join, partitions, rr)
	}
}
