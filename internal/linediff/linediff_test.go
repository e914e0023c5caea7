package linediff

import (
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestUnified(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		context    int
		want       string
	}{
		{name: "equal", a: "a\nb\n", b: "a\nb\n", context: 3, want: ""},
		{name: "both empty", context: 3, want: ""},
		{name: "new file", a: "", b: "a\nb\n", context: 3,
			want: "--- old\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{name: "removed file", a: "a\nb\n", b: "", context: 3,
			want: "--- old\n+++ new\n@@ -1,2 +0,0 @@\n-a\n-b\n"},
		{name: "one line changed", a: "a\nb\nc\n", b: "a\nB\nc\n", context: 3,
			want: "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{name: "no context", a: "a\nb\nc\n", b: "a\nB\nc\n", context: 0,
			want: "--- old\n+++ new\n@@ -2 +2 @@\n-b\n+B\n"},
		{name: "insertion without context", a: "a\nc\n", b: "a\nb\nc\n", context: 0,
			want: "--- old\n+++ new\n@@ -1,0 +2 @@\n+b\n"},
		{name: "deletion without context", a: "a\nb\nc\n", b: "a\nc\n", context: 0,
			want: "--- old\n+++ new\n@@ -2 +1,0 @@\n-b\n"},
		{name: "last line without newline", a: "a\nb", b: "a\nc", context: 1,
			want: "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"},
		{name: "append", a: "a\nb\n", b: "a\nb\nc\n", context: 1,
			want: "--- old\n+++ new\n@@ -2 +2,2 @@\n b\n+c\n"},
		{name: "two hunks", a: "1\n2\n3\n4\n5\n6\n7\n8\n9\n", b: "1\nX\n3\n4\n5\n6\n7\nY\n9\n", context: 1,
			want: "--- old\n+++ new\n@@ -1,3 +1,3 @@\n 1\n-2\n+X\n 3\n@@ -7,3 +7,3 @@\n 7\n-8\n+Y\n 9\n"},
		{name: "close changes share a hunk", a: "1\n2\n3\n4\n5\n", b: "1\nX\n3\nY\n5\n", context: 1,
			want: "--- old\n+++ new\n@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n-4\n+Y\n 5\n"},
		{name: "removed before added", a: "a\nb\nc\nd\n", b: "a\nx\ny\nd\n", context: 0,
			want: "--- old\n+++ new\n@@ -2,2 +2,2 @@\n-b\n-c\n+x\n+y\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Unified("old", "new", tc.a, tc.b, tc.context); got != tc.want {
				t.Errorf("Unified:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// apply rebuilds both texts from a script.
func apply(ls []Line) (a, b []string) {
	for _, l := range ls {
		if l.Op != Insert {
			a = append(a, l.Text)
		}
		if l.Op != Delete {
			b = append(b, l.Text)
		}
	}
	return a, b
}

// lcs is the length of the longest common subsequence, by the table.
func lcs(x, y []string) int {
	t := make([][]int, len(x)+1)
	for i := range t {
		t[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	return t[0][0]
}

// Random texts over a small alphabet: the script rebuilds both texts,
// numbers every line right, keeps as many lines as the longest common
// subsequence (the shortest script), and its hunks cover every change.
func TestLinesShortestAndExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	text := func() []string {
		out := make([]string, r.IntN(14))
		for i := range out {
			out[i] = string(rune('a' + r.IntN(4)))
		}
		return out
	}
	for n := range 3000 {
		x, y := text(), text()
		a, b := strings.Join(x, "\n"), strings.Join(y, "\n")
		ls := Lines(a, b)
		ga, gb := apply(ls)
		if strings.Join(ga, "\n") != a || strings.Join(gb, "\n") != b {
			t.Fatalf("case %d: %q → %q: the script rebuilds %q → %q", n, a, b, ga, gb)
		}
		equal, oi, ni := 0, 0, 0
		for _, l := range ls {
			if l.Op != Insert {
				oi++
				if l.Old != oi {
					t.Fatalf("case %d: old line %d numbered %d", n, oi, l.Old)
				}
			}
			if l.Op != Delete {
				ni++
				if l.New != ni {
					t.Fatalf("case %d: new line %d numbered %d", n, ni, l.New)
				}
			}
			if l.Op == Equal {
				equal++
			}
		}
		if want := lcs(x, y); equal != want {
			t.Fatalf("case %d: %q → %q keeps %d lines, the longest common subsequence is %d", n, a, b, equal, want)
		}
		changes := 0
		for _, h := range Hunks(a, b, r.IntN(3)) {
			for _, l := range h.Lines {
				if l.Op != Equal {
					changes++
				}
			}
		}
		if changes != len(ls)-equal {
			t.Fatalf("case %d: the hunks hold %d changes, the script %d", n, changes, len(ls)-equal)
		}
	}
}

// Past maxEdits the middle comes out removed and added whole, still a
// right script.
func TestLinesBounded(t *testing.T) {
	var x, y []string
	for i := range 3 * maxEdits {
		x = append(x, "old "+string(rune('a'+i%26)))
		y = append(y, "new "+string(rune('a'+i%26)))
	}
	a, b := "same\n"+strings.Join(x, "\n")+"\nend\n", "same\n"+strings.Join(y, "\n")+"\nend\n"
	ls := Lines(a, b)
	if len(ls) != 2+2*len(x) || ls[0].Op != Equal || ls[1].Op != Delete || ls[len(ls)-2].Op != Insert || ls[len(ls)-1].Op != Equal {
		t.Fatalf("a rewrite of %d lines: %d lines in the script", len(x), len(ls))
	}
	ga, gb := apply(ls)
	if strings.Join(ga, "\n")+"\n" != a || strings.Join(gb, "\n")+"\n" != b {
		t.Fatal("the bounded script does not rebuild the texts")
	}
}

// The golden diff of a journey file edited as a marketer would.
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata")
	before, err := os.ReadFile(filepath.Join(dir, "journey_before.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(filepath.Join(dir, "journey_after.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := Unified("live/journey.yaml", "disk/journey.yaml", string(before), string(after), 3)
	golden := filepath.Join(dir, "journey.diff")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("diff differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
}

// A 3,000-line file with 20 lines changed here and there, and the same
// file rewritten whole (the bounded search gives up at maxEdits).
func BenchmarkHunks(b *testing.B) {
	var x []string
	for i := range 3000 {
		x = append(x, "    line "+strings.Repeat("x", i%40))
	}
	y := append([]string(nil), x...)
	for i := 0; i < len(y); i += 150 {
		y[i] = "    changed"
	}
	z := make([]string, len(x))
	for i := range z {
		z[i] = "other " + x[i]
	}
	a, edited, rewritten := strings.Join(x, "\n"), strings.Join(y, "\n"), strings.Join(z, "\n")
	b.Run("edited", func(b *testing.B) {
		for b.Loop() {
			Hunks(a, edited, 3)
		}
	})
	b.Run("rewritten", func(b *testing.B) {
		for b.Loop() {
			Hunks(a, rewritten, 3)
		}
	})
}
