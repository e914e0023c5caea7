package main

import "runtime"

// procsPerCPU is how many Ps (GOMAXPROCS) the binary runs per CPU the Go
// runtime finds, unless the GOMAXPROCS environment variable sets them.
//
// The applier is one goroutine that computes for long stretches (a commit
// of thousands of events), and every acknowledgement waits on short ones
// (a handler, the event log's writer). With one P per CPU, the applier
// holds a P until the runtime preempts it, 10 ms later, and the short ones
// queue for the other; with two per CPU, the kernel shares the CPUs
// between the threads and runs a thread that wakes (an fsync returned, a
// request arrived) within a fraction of a millisecond. On two cores that
// took single tracks from ~10,600 to ~15,300 a second and their p99 at
// 7,500/s from 33 to 13 ms, and another key's p99 during a flood from 9 to
// 5 ms; applying keeps its pace at rates it keeps up with, and is 8–13 %
// slower while ingestion floods (docs/benchmarks.md, round 12).
const procsPerCPU = 2

// procsFor is the GOMAXPROCS main sets, given the GOMAXPROCS environment
// variable and the runtime's default; 0 leaves the runtime's (the variable
// is set: the operator chose).
func procsFor(env string, procs int) int {
	if env != "" {
		return 0
	}
	return max(procs, 1) * procsPerCPU
}

// setProcs sets GOMAXPROCS as procsFor says. Called from main only: it is
// the process's, not a Main's.
func setProcs(getenv func(string) string) {
	if n := procsFor(getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)); n > 0 {
		runtime.GOMAXPROCS(n)
	}
}
