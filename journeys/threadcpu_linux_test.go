package journeys

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time the calling thread has used (Linux's
// RUSAGE_THREAD), for benchmarks on a shared machine.
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
