package natscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says how many servers to run and where.
type Config struct {
	// Servers is how many NATS servers form the cluster (3 for R3).
	Servers int
	// Dir holds each server's JetStream store, <Dir>/<name>.
	Dir string
	// Host is the address every server listens on (127.0.0.1).
	Host string
	// ClientPort is the first server's client port; the others take the
	// next ones. 0: free ports chosen by the system.
	ClientPort int
	// RoutePort is the first server's cluster (route) port, likewise.
	RoutePort int
	// Name is the cluster's name.
	Name string
	// Logs turns the servers' own logs on (stderr).
	Logs bool
}

// Cluster is the running servers.
type Cluster struct {
	servers []*server.Server
	// URLs are the servers' client URLs, in order.
	URLs []string
}

// URL is every server's client URL, comma-separated, as NATS clients and
// `serve --cluster` take them.
func (c *Cluster) URL() string { return strings.Join(c.URLs, ",") }

// Start starts cfg.Servers servers and returns once JetStream has elected
// a meta leader that sees every server online (replicated streams can
// then be placed), or ctx ends.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Servers < 1 {
		return nil, fmt.Errorf("natscluster: want at least 1 server, got %d", cfg.Servers)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Name == "" {
		cfg.Name = "cartera"
	}
	routes := make([]int, cfg.Servers)
	for i := range routes {
		if cfg.RoutePort != 0 {
			routes[i] = cfg.RoutePort + i
			continue
		}
		p, err := freePort(cfg.Host)
		if err != nil {
			return nil, err
		}
		routes[i] = p
	}
	var routeURLs []string
	for _, p := range routes {
		routeURLs = append(routeURLs, fmt.Sprintf("nats-route://%s", net.JoinHostPort(cfg.Host, fmt.Sprint(p))))
	}
	c := &Cluster{}
	for i := range cfg.Servers {
		name := fmt.Sprintf("n%d", i+1)
		port := server.RANDOM_PORT
		if cfg.ClientPort != 0 {
			port = cfg.ClientPort + i
		}
		opts := &server.Options{
			ServerName: name, Host: cfg.Host, Port: port,
			JetStream: true, StoreDir: filepath.Join(cfg.Dir, name),
			NoLog: !cfg.Logs, NoSigs: true,
		}
		if cfg.Servers > 1 {
			opts.Cluster = server.ClusterOpts{Name: cfg.Name, Host: cfg.Host, Port: routes[i]}
			opts.Routes = server.RoutesFromStr(strings.Join(routeURLs, ","))
		}
		s, err := server.NewServer(opts)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("natscluster: server %s: %w", name, err)
		}
		if cfg.Logs {
			s.ConfigureLogger()
		}
		s.Start()
		c.servers = append(c.servers, s)
		if !s.ReadyForConnections(30 * time.Second) {
			c.Close()
			return nil, fmt.Errorf("natscluster: server %s did not start within 30s", name)
		}
		c.URLs = append(c.URLs, s.ClientURL())
	}
	// Ready once a leader is elected and, in a cluster, sees every
	// server online with JetStream: before that, an R3 stream or bucket
	// is refused ("no suitable peers for placement, peer offline"), as a
	// replicated test saw about once in twenty starts.
	for {
		for _, s := range c.servers {
			if s.JetStreamIsLeader() && (cfg.Servers == 1 || len(s.JetStreamClusterPeers()) == cfg.Servers) {
				return c, nil
			}
		}
		select {
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("natscluster: JetStream elected no leader that sees all %d servers: %w", cfg.Servers, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close shuts every server down and waits for them.
func (c *Cluster) Close() {
	for _, s := range c.servers {
		s.Shutdown()
	}
	for _, s := range c.servers {
		s.WaitForShutdown()
	}
	c.servers = nil
}

// Server is the i-th server, for tests that stop one.
func (c *Cluster) Server(i int) *server.Server { return c.servers[i] }

func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("natscluster: find a free port: %w", err)
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("natscluster: not a TCP address")
	}
	return addr.Port, nil
}
