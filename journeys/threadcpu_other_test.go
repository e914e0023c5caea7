//go:build !linux

package journeys

import "time"

// threadCPU is 0 where the thread's CPU time is not read: the benchmarks
// that report it then report wall time alone.
func threadCPU() time.Duration { return 0 }
