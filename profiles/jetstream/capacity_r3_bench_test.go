//go:build !race

// Built without -race, as replicated_norace_test.go is: a data race inside
// nats-server's clustered stream path.

package jetstream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cartera/profiles/jetstream"
)

// BenchmarkAppendR3 is BenchmarkAppend on a stream replicated on three
// embedded NATS servers (R3, NATS's default sync): an Append returns once
// a quorum of the replicas stored its records. The client connects to
// the three servers; the stream's leader is wherever it was elected.
//
//	go test -run '^$' -bench BenchmarkAppendR3 -benchtime 1x ./profiles/jetstream
func BenchmarkAppendR3(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("log=jetstream-R3/batch=%d", batch), func(b *testing.B) {
			nc := startNATSCluster(b, 3)
			cfg := testConfig(strings.Join(nc.URLs, ","))
			cfg.Partitions, cfg.Replicas, cfg.AckWait = 64, 3, 30*time.Second
			l, err := jetstream.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			measureAppends(b, l, batch)
		})
	}
}
