package jetstream_test

import (
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// cutProxy forwards TCP connections to a NATS server until it is cut:
// then it drops every connection and refuses new ones, as a network
// partition would, until it is mended.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: strings.TrimPrefix(target, "nats://")}
	t.Cleanup(func() { _ = ln.Close(); p.sever(true) })
	go p.serve()
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

// sever cuts the link (cut) or mends it.
func (p *cutProxy) sever(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// A node cut off from NATS stops applying: the node on the other side
// takes its partitions once the leases lapse and applies what arrives
// meanwhile. When the link is mended the cut-off node finds its leases
// gone, rejoins, and takes its share back; every event is applied once.
func TestPartitionedNodeStopsAndResumes(t *testing.T) {
	ns := startNATS(t)
	proxy := startProxy(t, ns.url())
	dir := t.TempDir()
	a := startNode(t, ns.url(), "a", filepath.Join(dir, "a.db"))
	b := startNode(t, proxy.url(), "b", filepath.Join(dir, "b.db"))
	nodes := []*node{a, b}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	ids := publish(t, ingest, 16, 0, 160)
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, ns.url())

	bHeld := b.held()
	proxy.sever(true)
	ids = append(ids, publish(t, ingest, 16, 1000, 160)...)
	eventually(t, "b gives up its partitions", func() bool { return len(b.held()) == 0 })
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	waitAppliedOnce(t, nodes, ids)
	for _, p := range bHeld {
		if !slices.Contains(a.held(), p) {
			t.Fatalf("partition %d of the cut-off node is not held by a", p)
		}
	}

	proxy.sever(false)
	eventually(t, "b rejoins and the partitions rebalance", func() bool { return balanced(a, b) && len(b.held()) > 0 })
	ids = append(ids, publish(t, ingest, 16, 2000, 160)...)
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, ns.url())
}
