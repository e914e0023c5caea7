//go:build !race

// A replicated stream: built without -race (a data race inside
// nats-server's clustered stream path, see profiles/jetstream's
// replicated_norace_test.go); `make test` runs it in a run of its own.

package natscluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterTakesR3Stream: three servers form one JetStream cluster that
// holds a stream at three replicas, which keeps taking messages with one
// server down.
func TestClusterTakesR3Stream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, Config{Servers: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.URLs) != 3 {
		t.Fatalf("URLs = %v, want 3", c.URLs)
	}
	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create an R3 stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := 1 + len(info.Cluster.Replicas); n != 3 {
		t.Fatalf("stream on %d servers, want 3", n)
	}
	// A quorum (two of three) keeps acknowledging.
	down := 0
	if info.Cluster.Leader == "n1" {
		down = 1
	}
	c.Server(down).Shutdown()
	c.Server(down).WaitForShutdown()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := js.Publish(ctx, "t.1", []byte("two"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish with one server down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
