package console

import (
	"fmt"
	"html/template"
	"slices"
	"strings"

	"cartera/journeys"
)

// The journey graph: one box per step of the file, an arrow per way out
// (the next step, each branch case, each split arm, a wait_for's event and
// timeout), and an end node; every box and arrow carries its count for the
// chosen time range. Drawn on the server as SVG: boxes in layers from the
// first step down (the longest path from it, so a step is drawn below
// every step that leads to it; arrows back up, loops, go round the right).

const (
	nodeW, nodeH = 200.0, 74.0
	gapX, gapY   = 36.0, 70.0
	margin       = 16.0
	endID        = "\x00end"
)

type gnode struct {
	id    string
	layer int
	x, y  float64
}

type gedge struct {
	from, to string
	label    string
	count    int64
	back     bool
}

// layers assigns each step a layer: the longest path from the first step
// over the edges that are not back edges (found by a depth-first walk).
func layers(steps []Step) (map[string]int, map[[2]string]bool) {
	next := map[string][]string{}
	for _, s := range steps {
		for _, e := range s.Edges {
			to := e.To
			if to == "" {
				to = endID
			}
			next[s.ID] = append(next[s.ID], to)
		}
	}
	back := map[[2]string]bool{}
	state := map[string]int{} // 1 on the stack, 2 done
	var order []string        // reverse post-order: a topological order
	var walk func(string)
	walk = func(u string) {
		state[u] = 1
		for _, v := range next[u] {
			switch state[v] {
			case 0:
				walk(v)
			case 1:
				back[[2]string{u, v}] = true
			}
		}
		state[u] = 2
		order = append(order, u)
	}
	for _, s := range steps { // the first step, then any the others miss
		if state[s.ID] == 0 {
			walk(s.ID)
		}
	}
	slices.Reverse(order)
	layer := map[string]int{}
	for _, u := range order {
		for _, v := range next[u] {
			if !back[[2]string{u, v}] && layer[v] < layer[u]+1 {
				layer[v] = layer[u] + 1
			}
		}
	}
	return layer, back
}

// graphSVG draws a journey with the counts of a period.
func graphSVG(j *Journey, period map[string]journeys.StepCounts) template.HTML {
	if len(j.Steps) == 0 {
		return ""
	}
	layer, back := layers(j.Steps)
	var edges []gedge
	hasEnd := false
	for _, s := range j.Steps {
		for _, e := range s.Edges {
			to, n := e.To, period[e.To][journeys.CounterFrom+s.ID]
			if to == "" {
				to, n, hasEnd = endID, period[s.ID]["exited:completed"], true
			}
			edges = append(edges, gedge{from: s.ID, to: to, label: e.Label, count: n, back: back[[2]string{s.ID, to}]})
		}
		if s.Kind == journeys.StepExit {
			edges = append(edges, gedge{from: s.ID, to: endID, count: period[s.ID]["exited"]})
			hasEnd = true
		}
	}
	ids := make([]string, 0, len(j.Steps)+1)
	for _, s := range j.Steps {
		ids = append(ids, s.ID)
	}
	if hasEnd {
		ids = append(ids, endID)
		// The end below everything.
		deepest := 0
		for _, id := range ids[:len(ids)-1] {
			deepest = max(deepest, layer[id])
		}
		layer[endID] = deepest + 1
	}
	// Rows, in the file's order, then each row ordered by where the
	// steps that lead to it stand (one barycentre pass).
	rows := map[int][]string{}
	depth := 0
	for _, id := range ids {
		rows[layer[id]] = append(rows[layer[id]], id)
		depth = max(depth, layer[id])
	}
	pos := map[string]float64{}
	width := 0
	for l := 0; l <= depth; l++ {
		row := rows[l]
		if l > 0 {
			bary := map[string]float64{}
			for _, id := range row {
				sum, n := 0.0, 0.0
				for _, e := range edges {
					if e.to == id && !e.back {
						if p, ok := pos[e.from]; ok {
							sum, n = sum+p, n+1
						}
					}
				}
				bary[id] = float64(slices.Index(row, id))
				if n > 0 {
					bary[id] = sum / n
				}
			}
			slices.SortStableFunc(row, func(a, b string) int {
				switch {
				case bary[a] < bary[b]:
					return -1
				case bary[a] > bary[b]:
					return 1
				}
				return 0
			})
		}
		for i, id := range row {
			pos[id] = float64(i) - float64(len(row)-1)/2
		}
		width = max(width, len(row))
	}
	// Arrows that skip rows go round the left, their labels in a gutter.
	long := func(e gedge) bool { return !e.back && layer[e.to]-layer[e.from] > 1 }
	gutter := 0.0
	if slices.ContainsFunc(edges, long) {
		gutter = 220
	}
	w := gutter + float64(width)*(nodeW+gapX) - gapX + 2*margin + 120 // room for loops on the right
	h := float64(depth+1)*(nodeH+gapY) - gapY + 2*margin
	nodes := map[string]*gnode{}
	for _, id := range ids {
		cx := gutter + margin + (float64(width)*(nodeW+gapX)-gapX)/2 + pos[id]*(nodeW+gapX)
		nodes[id] = &gnode{id: id, layer: layer[id], x: cx - nodeW/2, y: margin + float64(layer[id])*(nodeH+gapY)}
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="graph" class="graph" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="steps of journey %s">`, w, h, w, h, esc(j.ID))
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#667085"/></marker></defs>`)
	longs := 0
	for i, e := range edges {
		u, v := nodes[e.from], nodes[e.to]
		var path string
		var lx, ly float64
		anchor := "middle"
		if long(e) {
			x1, y1 := u.x, u.y+nodeH*0.7
			x2, y2 := v.x, v.y+nodeH*0.3
			bend := min(x1, x2) - 28 - float64(longs%8)*14
			longs++
			path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, bend, y1, bend, y2, x2, y2)
			lx, ly, anchor = bend-6, y1+(y2-y1)*0.35, "end"
		} else if e.back {
			// Round the right side, from u's right edge up to v's.
			x1, y1 := u.x+nodeW, u.y+nodeH/2
			x2, y2 := v.x+nodeW, v.y+nodeH/2
			bend := max(x1, x2) + 60 + float64(i%3)*12
			path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, bend, y1, bend, y2, x2, y2)
			lx, ly = bend-4, (y1+y2)/2
		} else {
			// Spread the ways out of a box along its bottom edge.
			outs := 0
			k := 0
			for _, o := range edges {
				if o.from == e.from && !o.back && !long(o) {
					if o == e {
						k = outs
					}
					outs++
				}
			}
			x1 := u.x + nodeW*float64(k+1)/float64(outs+1)
			y1 := u.y + nodeH
			x2, y2 := v.x+nodeW/2, v.y
			my := (y1 + y2) / 2
			path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, x1, my, x2, my, x2, y2-1)
			lx, ly = (x1+x2)/2, my
		}
		fmt.Fprintf(&b, `<path class="edge" data-from="%s" data-to="%s" d="%s" marker-end="url(#arrow)"/>`, esc(e.from), esc(strings.TrimPrefix(e.to, "\x00")), path)
		label := fmt.Sprint(e.count)
		if e.label != "" {
			label = shorten(e.label, 34) + " · " + label
		}
		fmt.Fprintf(&b, `<text class="elabel" data-from="%s" data-to="%s" x="%.1f" y="%.1f" text-anchor="%s">%s</text>`,
			esc(e.from), esc(strings.TrimPrefix(e.to, "\x00")), lx, ly, anchor, esc(label))
	}
	for _, s := range j.Steps {
		n := nodes[s.ID]
		c := period[s.ID]
		waiting := s.Counts["waiting"]
		line := fmt.Sprintf("in %d", c["entered"])
		if waiting > 0 {
			line += fmt.Sprintf(" · waiting %d", waiting)
		}
		if c["sent"] > 0 || s.Kind == journeys.StepSend || s.Kind == journeys.StepAudience || s.Kind == journeys.StepPass {
			line += fmt.Sprintf(" · sent %d", c["sent"])
		}
		if c["suppressed"] > 0 {
			line += fmt.Sprintf(" · supp. %d", c["suppressed"])
		}
		line2 := ""
		if c["delayed"] > 0 {
			line2 += fmt.Sprintf("delayed %d  ", c["delayed"])
		}
		if c["exited"] > 0 {
			line2 += fmt.Sprintf("exits %d", c["exited"])
		}
		fmt.Fprintf(&b, `<g class="node kind-%s" data-step="%s"><a href="#step-%s"><rect x="%.1f" y="%.1f" width="%.0f" height="%.0f" rx="6"/>`,
			esc(s.Kind), esc(s.ID), esc(s.ID), n.x, n.y, nodeW, nodeH)
		fmt.Fprintf(&b, `<text class="nid" x="%.1f" y="%.1f">%s</text>`, n.x+10, n.y+18, esc(shorten(s.ID, 26)))
		fmt.Fprintf(&b, `<text class="nkind" x="%.1f" y="%.1f">%s</text>`, n.x+10, n.y+34, esc(shorten(s.Summary, 30)))
		fmt.Fprintf(&b, `<text class="ncount" x="%.1f" y="%.1f">%s</text>`, n.x+10, n.y+51, esc(line))
		if line2 != "" {
			fmt.Fprintf(&b, `<text class="ncount" x="%.1f" y="%.1f">%s</text>`, n.x+10, n.y+66, esc(line2))
		}
		b.WriteString(`</a></g>`)
	}
	if n, ok := nodes[endID]; ok {
		cx := n.x + nodeW/2
		fmt.Fprintf(&b, `<g class="node end" data-step="end"><rect x="%.1f" y="%.1f" width="120" height="34" rx="17"/><text x="%.1f" y="%.1f" text-anchor="middle">end · goal %d</text></g>`,
			cx-60, n.y, cx, n.y+22, period[""]["converted"])
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func esc(s string) string { return template.HTMLEscapeString(s) }

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
