package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"cartera/internal/natscluster"
)

// newNATSServer starts one NATS server with JetStream in dir.
func newNATSServer(dir string, set ...func(*server.Options)) (*server.Server, error) {
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
	for _, f := range set {
		f(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		return nil, fmt.Errorf("nats server did not start")
	}
	return s, nil
}

// startNATSCluster starts n NATS servers forming one JetStream cluster on
// loopback (internal/natscluster, as `make cluster` does), stopped when
// the test ends.
func startNATSCluster(t testing.TB, n int) *natscluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := natscluster.Start(ctx, natscluster.Config{Servers: n, Dir: t.TempDir(), Name: "cartera-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
