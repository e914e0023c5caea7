// Package natscluster runs a NATS JetStream cluster inside this process:
// several nats-server instances (the Go module Cartera already depends on)
// routed to each other on one host, each with its own store folder. It is
// the local cluster of `make cluster` (cmd/cartera-nats) and of tests; a
// production cluster runs nats-server on machines of its own.
package natscluster
