package jetstream_test

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// newNATSServer starts one NATS server with JetStream in dir.
func newNATSServer(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		return nil, fmt.Errorf("nats server did not start")
	}
	return s, nil
}

// natsCluster is three NATS servers forming one JetStream cluster on
// loopback, each with its own store.
type natsCluster struct {
	servers []*server.Server
	urls    []string
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	routes := make([]int, n)
	for i := range routes {
		routes[i] = freePort(t)
	}
	var routeURLs []string
	for _, p := range routes {
		routeURLs = append(routeURLs, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &natsCluster{}
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "cartera-test", Host: "127.0.0.1", Port: routes[i]},
			Routes:  server.RoutesFromStr(strings.Join(routeURLs, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("nats server did not start")
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		c.servers = append(c.servers, s)
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port))
	}
	eventually(t, "the JetStream cluster elects a leader", func() bool {
		for _, s := range c.servers {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return c
}

// With the stream and both KV buckets replicated on three servers, one
// server going down and a Cartera node dying at once lose nothing: the
// other node takes the dead one's partitions over and every acknowledged
// event is applied exactly once.
func TestReplicatedClusterTakeOver(t *testing.T) {
	nc := startNATSCluster(t, 3)
	all := strings.Join(nc.urls, ",")
	dir := t.TempDir()
	replicated := func(url string) func(*node) {
		return func(n *node) { n.url, n.replicas = url, 3 }
	}
	a := startNodeWith(t, "a", filepath.Join(dir, "a.db"), replicated(nc.urls[0]+","+nc.urls[1]))
	b := startNodeWith(t, "b", filepath.Join(dir, "b.db"), replicated(nc.urls[1]+","+nc.urls[0]))
	nodes := []*node{a, b}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })

	cfg := testConfig(all)
	cfg.Partitions, cfg.Replicas = testPartitions, 3
	ingest := open(t, cfg)
	ids := publish(t, ingest, 16, 0, 120)
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, nc.urls[0])

	// The third server goes down (the other two are a quorum) and b dies.
	nc.servers[2].Shutdown()
	nc.servers[2].WaitForShutdown()
	b.kill()
	ids = append(ids, publish(t, ingest, 16, 1000, 120)...)
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, nc.urls[0])
}
