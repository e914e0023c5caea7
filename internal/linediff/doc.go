// Package linediff compares two texts line by line with Myers' algorithm
// and groups the differences into hunks with a little context around
// them, as `diff -u` does. The console shows what a reload changes with
// it, and the reload API returns its unified text.
//
// It is written for files people edit by hand (journeys, rules,
// policies): a few hundred lines, a few changes. Past maxEdits changed
// lines it stops looking for the shortest script and reports the middle
// as removed and added whole, so a rewritten large file costs bounded
// time and memory.
//
//	h := linediff.Hunks(live, disk, 3)
//	fmt.Print(linediff.Unified("live/a.yaml", "disk/a.yaml", live, disk, 3))
package linediff
