//go:build !race

// Three NATS servers with a replicated stream: built without -race, as
// profiles/jetstream's replicated_norace_test.go says why (a data race
// inside nats-server's clustered stream path); `make test` runs these in a
// run of their own.

package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"cartera/internal/natscluster"
)

// TestServeOnReplicatedCluster is what `make cluster-one` runs: serve on a
// stream replicated on three NATS servers (internal/natscluster,
// CARTERA_CLUSTER_REPLICAS=3), which goes on acknowledging and applying
// with one of the three down.
func TestServeOnReplicatedCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	nc, err := natscluster.Start(ctx, natscluster.Config{Servers: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	data := filepath.Join(t.TempDir(), "cartera.db")
	s := startServerAt(t, data, map[string]string{"CARTERA_CLUSTER_URL": nc.URL(), "CARTERA_CLUSTER_REPLICAS": "3"})
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u3","traits":{"name":"Ana"}}`))

	stream := clusterStream(t, nc.URL())
	if n := 1 + len(stream.Cluster.Replicas); stream.Config.Replicas != 3 || n != 3 {
		t.Fatalf("stream replicas: config %d, on %d servers; want 3", stream.Config.Replicas, n)
	}
	down := 0
	if stream.Cluster.Leader == "n1" {
		down = 1
	}
	nc.Server(down).Shutdown()
	nc.Server(down).WaitForShutdown()
	eventually(t, 30*time.Second, "a track is acknowledged with one NATS server down", func() bool {
		return s.send(t, "web_dev_write_key", "/v1/track", `{"messageId":"m-r3","userId":"u3","event":"Quorum"}`).status == 200
	})
	// The node's reader may have followed the stream from the server that
	// went down: it moves to another (nats.go's ordered consumer), and
	// applying goes on.
	start := time.Now()
	eventually(t, 60*time.Second, "the event is applied with one NATS server down", func() bool {
		r := s.admin(t, "GET", "/v1/profiles/user_id:u3")
		return r.status == 200 && len(eventsNamed(r.body, "Quorum")) == 1
	})
	t.Logf("applied %s after the server went down", time.Since(start))
}
