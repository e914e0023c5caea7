package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestRunPrintsAndServes: cartera-nats starts its servers, prints where
// they listen, writes the ready file with their URLs, serves clients until
// its context ends, and then removes the file.
func TestRunPrintsAndServes(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--servers", "2", "--dir", filepath.Join(dir, "nats"), "--port", "0", "--route-port", "0", "--ready-file", ready}, &out)
	}()
	var urls string
	for deadline := time.Now().Add(60 * time.Second); ; {
		if b, err := os.ReadFile(ready); err == nil {
			urls = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no ready file within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(strings.Split(urls, ",")); n != 2 {
		t.Fatalf("ready file holds %q: %d URLs, want 2", urls, n)
	}
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatalf("connect to %s: %v", urls, err)
	}
	nc.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nats n1: nats://127.0.0.1:", "nats n2: nats://127.0.0.1:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"--servers", "0", "--dir", t.TempDir()}, &bytes.Buffer{}); err == nil {
		t.Fatal("run with 0 servers succeeded")
	}
}
