package faults_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"cartera/internal/sdktest"
)

var bin string

func TestMain(m *testing.M) { sdktest.Main(m, &bin) }

const (
	clients  = 4
	perBatch = 10
)

// batch is one /v1/batch request a client sends until it is acknowledged,
// as a Segment SDK retries a failed flush.
type batch struct {
	ids  []string
	body []byte
}

func newBatch(round, client, seq, users int) batch {
	var b batch
	var msgs []map[string]any
	for i := range perBatch {
		id := fmt.Sprintf("k%d-c%d-s%d-%d", round, client, seq, i)
		b.ids = append(b.ids, id)
		msgs = append(msgs, map[string]any{
			"type": "track", "messageId": id, "event": "Product Viewed",
			"userId":     fmt.Sprintf("kill-user-%d", (client*31+seq*7+i)%users),
			"properties": map[string]any{"product_id": id},
		})
	}
	b.body, _ = json.Marshal(map[string]any{"batch": msgs})
	return b
}

// `kill -9` of serve at random moments under load, 20 times in one run
// (CARTERA_SOAK_KILLS for `make soak`):
// after the last restart every acknowledged messageId is applied exactly
// once, and no messageId (acknowledged or not) more than once.
func TestKill9UnderLoadLosesNoAcknowledgedEvent(t *testing.T) {
	kills := 20
	if n, err := strconv.Atoi(os.Getenv("CARTERA_SOAK_KILLS")); err == nil && n > 0 {
		kills = n // make soak
	}
	users := 3 * kills // a few hundred events each, under the per-profile cap
	srv := sdktest.Start(t, bin, sdktest.Options{})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	httpc := &http.Client{Timeout: 5 * time.Second}
	acked := map[string]bool{}
	var mu sync.Mutex
	pending := make([]*batch, clients) // unacknowledged when the server died
	seq := 0
	for round := range kills {
		url := srv.URL() + "/v1/batch"
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					b := pending[c]
					if b == nil {
						nb := newBatch(round, c, n, users)
						b = &nb
						pending[c] = b
					}
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b.body))
					req.SetBasicAuth("web_dev_write_key", "")
					req.Header.Set("Content-Type", "application/json")
					resp, err := httpc.Do(req)
					if err != nil {
						return // killed: retry the batch after the restart
					}
					_ = resp.Body.Close()
					if resp.StatusCode == 503 {
						continue
					}
					if resp.StatusCode != 200 {
						t.Errorf("batch: status %d", resp.StatusCode)
						return
					}
					mu.Lock()
					for _, id := range b.ids {
						acked[id] = true
					}
					mu.Unlock()
					pending[c] = nil
				}
			})
		}
		time.Sleep(time.Duration(30+rng.IntN(300)) * time.Millisecond)
		srv.Kill()
		close(stop)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		srv.Restart()
		seq++
	}
	// Flush what the clients were still retrying.
	for _, b := range pending {
		if b == nil {
			continue
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/v1/batch", bytes.NewReader(b.body))
		req.SetBasicAuth("web_dev_write_key", "")
		resp, err := httpc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("final retry: %v %v", resp, err)
		}
		_ = resp.Body.Close()
		for _, id := range b.ids {
			acked[id] = true
		}
	}
	if len(acked) < kills*perBatch {
		t.Fatalf("only %d events acknowledged over %d kills: the load did not run", len(acked), kills)
	}

	seen := map[string]int{}
	for u := range users {
		p, status := srv.GetProfile(t, fmt.Sprintf("user_id:kill-user-%d", u), 1000)
		if p == nil {
			if status == 404 {
				continue
			}
			t.Fatalf("profile kill-user-%d: status %d", u, status)
		}
		if p.EventCount >= 1000 {
			t.Fatalf("kill-user-%d holds %d events, the per-profile cap: the check would miss some", u, p.EventCount)
		}
		for _, e := range p.Events {
			seen[e.MessageID]++
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("messageId %s applied %d times", id, n)
		}
	}
	lost := 0
	for id := range acked {
		if seen[id] != 1 {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged messageId %s applied %d times, want once", id, seen[id])
			}
		}
	}
	t.Logf("%d kills, %d events acknowledged, %d applied, %d lost", kills, len(acked), len(seen), lost)
}
