package linediff

import (
	"fmt"
	"strings"
)

// Op says what happened to a line.
type Op int8

// The ops of a line.
const (
	// Equal is a line in both texts (context).
	Equal Op = iota
	// Delete is a line only in the old text.
	Delete
	// Insert is a line only in the new text.
	Insert
)

// Line is one line of a diff. Old and New are its 1-based line numbers in
// each text; 0 on the side it is not in.
type Line struct {
	Op       Op
	Text     string
	Old, New int
}

// Hunk is a run of changes with their context.
type Hunk struct {
	// OldStart and NewStart are the first line of the hunk in each text
	// (1-based; for an empty range, the line before it, as diff -u).
	OldStart, OldLines int
	NewStart, NewLines int
	Lines              []Line
}

// Header is the hunk's "@@ -1,3 +1,4 @@" line.
func (h Hunk) Header() string {
	return fmt.Sprintf("@@ -%s +%s @@", span(h.OldStart, h.OldLines), span(h.NewStart, h.NewLines))
}

func span(start, n int) string {
	if n == 1 {
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}

// maxEdits bounds the search for the shortest edit script: its memory
// grows with the square of the changes.
const maxEdits = 1000

// split cuts a text into lines without their newlines; a last line
// without a newline is a line too.
func split(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// Lines is the whole edit script from a to b: every line of both, in
// order, deletions before the insertions that replace them.
func Lines(a, b string) []Line {
	x, y := split(a), split(b)
	// The common ends cost nothing to find and are most of a typical edit.
	pre := 0
	for pre < len(x) && pre < len(y) && x[pre] == y[pre] {
		pre++
	}
	suf := 0
	for suf < len(x)-pre && suf < len(y)-pre && x[len(x)-1-suf] == y[len(y)-1-suf] {
		suf++
	}
	out := make([]Line, 0, len(x)+len(y)-pre-suf)
	for i := range pre {
		out = append(out, Line{Op: Equal, Text: x[i], Old: i + 1, New: i + 1})
	}
	out = middle(out, x[pre:len(x)-suf], y[pre:len(y)-suf], pre, pre)
	for i := range suf {
		oi, ni := len(x)-suf+i, len(y)-suf+i
		out = append(out, Line{Op: Equal, Text: x[oi], Old: oi + 1, New: ni + 1})
	}
	return out
}

// middle appends the shortest edit script from x to y (Myers 1986, the
// greedy forward search with its trace kept), or, past maxEdits, all of x
// removed then all of y added. oi and ni are the lines before x and y.
func middle(out []Line, x, y []string, oi, ni int) []Line {
	n, m := len(x), len(y)
	whole := func(out []Line) []Line {
		for i, s := range x {
			out = append(out, Line{Op: Delete, Text: s, Old: oi + i + 1})
		}
		for i, s := range y {
			out = append(out, Line{Op: Insert, Text: s, New: ni + i + 1})
		}
		return out
	}
	if n == 0 || m == 0 {
		return whole(out)
	}
	maxD := min(n+m, maxEdits)
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	// trace[d] is v after step d for k in [-d, d], at index k+d.
	var trace [][]int
	found := -1
	for d := 0; d <= maxD && found < 0; d++ {
		for k := -d; k <= d; k += 2 {
			var i int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				i = v[off+k+1] // down: an insertion
			} else {
				i = v[off+k-1] + 1 // right: a deletion
			}
			j := i - k
			for i < n && j < m && x[i] == y[j] {
				i, j = i+1, j+1
			}
			v[off+k] = i
			if i >= n && j >= m {
				found = d
				break
			}
		}
		trace = append(trace, append([]int(nil), v[off-d:off+d+1]...))
	}
	if found < 0 {
		return whole(out)
	}
	// Walk back from (n, m), collecting the script in reverse.
	rev := make([]Line, 0, n+m)
	i, j := n, m
	for d := found; d > 0; d-- {
		prev := trace[d-1]
		at := func(k int) int { return prev[k+d-1] }
		k := i - j
		insert := k == -d || (k != d && at(k-1) < at(k+1))
		pk := k - 1
		if insert {
			pk = k + 1
		}
		pi := at(pk)
		pj := pi - pk
		// The move ends at (mi, mj); a snake of equal lines runs from
		// there to (i, j).
		mi := pi + 1
		if insert {
			mi = pi
		}
		for i > mi {
			i, j = i-1, j-1
			rev = append(rev, Line{Op: Equal, Text: x[i], Old: oi + i + 1, New: ni + j + 1})
		}
		if insert {
			rev = append(rev, Line{Op: Insert, Text: y[pj], New: ni + pj + 1})
		} else {
			rev = append(rev, Line{Op: Delete, Text: x[pi], Old: oi + pi + 1})
		}
		i, j = pi, pj
	}
	for i > 0 {
		i, j = i-1, j-1
		rev = append(rev, Line{Op: Equal, Text: x[i], Old: oi + i + 1, New: ni + j + 1})
	}
	for l, r := 0, len(rev)-1; l < r; l, r = l+1, r-1 {
		rev[l], rev[r] = rev[r], rev[l]
	}
	// diff -u shows a change's removed lines before its added ones.
	return append(out, reorder(rev)...)
}

// reorder puts each run of changes' deletions before its insertions.
func reorder(ls []Line) []Line {
	out := make([]Line, 0, len(ls))
	for s := 0; s < len(ls); {
		if ls[s].Op == Equal {
			out = append(out, ls[s])
			s++
			continue
		}
		e := s
		for e < len(ls) && ls[e].Op != Equal {
			e++
		}
		for _, l := range ls[s:e] {
			if l.Op == Delete {
				out = append(out, l)
			}
		}
		for _, l := range ls[s:e] {
			if l.Op == Insert {
				out = append(out, l)
			}
		}
		s = e
	}
	return out
}

// Hunks groups the changes from a to b with up to context equal lines
// around each; changes with at most 2*context equal lines between them
// share a hunk. Equal texts have none.
func Hunks(a, b string, context int) []Hunk {
	ls := Lines(a, b)
	context = max(context, 0)
	var out []Hunk
	// oldN and newN count the lines of each text before ls[s].
	oldN, newN := 0, 0
	for s := 0; s < len(ls); {
		if ls[s].Op == Equal {
			s++
			oldN, newN = oldN+1, newN+1
			continue
		}
		// A change at s: the hunk starts context lines before it and runs
		// until a gap of more than 2*context equal lines, or the end.
		start := max(s-context, 0)
		end := s
		for end < len(ls) {
			if ls[end].Op != Equal {
				end++
				continue
			}
			gap := end
			for gap < len(ls) && ls[gap].Op == Equal {
				gap++
			}
			if gap == len(ls) || gap-end > 2*context {
				end = min(end+context, len(ls))
				break
			}
			end = gap
		}
		back := s - start              // equal lines of context before the change
		ob, nb := oldN-back, newN-back // lines of each text before the hunk
		h := Hunk{Lines: ls[start:end], OldStart: ob, NewStart: nb}
		for _, l := range h.Lines {
			if l.Op != Insert {
				h.OldLines++
			}
			if l.Op != Delete {
				h.NewLines++
			}
		}
		// diff -u numbers a range from its first line, an empty one from
		// the line before it.
		if h.OldLines > 0 {
			h.OldStart++
		}
		if h.NewLines > 0 {
			h.NewStart++
		}
		out = append(out, h)
		oldN, newN = ob+h.OldLines, nb+h.NewLines
		s = end
	}
	return out
}

// Unified is the diff -u text from a (named from) to b (named to), with
// context lines around each change; "" when the texts are equal. A text
// whose last line lacks a newline is shown as if it had one.
func Unified(from, to, a, b string, context int) string {
	return Format(from, to, Hunks(a, b, context))
}

// Format writes hunks as diff -u text; "" for none.
func Format(from, to string, hunks []Hunk) string {
	if len(hunks) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", from, to)
	for _, h := range hunks {
		sb.WriteString(h.Header())
		sb.WriteByte('\n')
		for _, l := range h.Lines {
			sb.WriteByte(" -+"[l.Op])
			sb.WriteString(l.Text)
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}
