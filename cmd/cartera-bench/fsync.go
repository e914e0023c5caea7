package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// fsync measures what one durable commit costs at least on this disk: a
// 4 KiB overwrite followed by fsync, many times.
func fsync(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fsync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "folder on the disk to measure (where the bbolt file lives)")
	count := fs.Int("count", 2000, "fsyncs to time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.CreateTemp(*dir, "cartera-bench-fsync-")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer func() { _ = f.Close() }()
	buf := make([]byte, 4096)
	// Write the file once so that later syncs do not grow it.
	for i := range 64 {
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	lat := make([]time.Duration, 0, *count)
	start := time.Now()
	for i := range *count {
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, int64(i%64)*4096); err != nil {
			return err
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	total := time.Since(start)
	s := summarize(lat)
	fmt.Fprintf(stdout, "fsync of a 4 KiB overwrite in %s, %d samples: p50 %s p90 %s p99 %s max %s (%.0f syncs/s serial)\n",
		*dir, len(lat), s.p50, s.p90, s.p99, s.max, float64(len(lat))/total.Seconds())
	return nil
}
