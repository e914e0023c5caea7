package main_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"cartera/internal/sdktest"
)

// TestKill9UnderLoadNoSendDoubledNoTimerLost: sign-ups arrive under load
// while serve is killed with SIGKILL at random moments, 20 times in a row
// (CARTERA_SOAK_KILLS for more); each starts follow_up (a 2 s timer, then
// a send). After the last restart every sign-up acknowledged or retried
// entered the journey once, no timer was lost (every instance sent and
// none is waiting), the engine recorded one send per instance, and the
// outbox delivered each send's key at least once and never twice within
// one run of the process (a delivery a kill cut short goes again, with
// the same idempotency key).
func TestKill9UnderLoadNoSendDoubledNoTimerLost(t *testing.T) {
	kills := 20
	if n, err := strconv.Atoi(os.Getenv("CARTERA_SOAK_KILLS")); err == nil && n > 0 {
		kills = n
	}
	dir := writeFiles(t, journeyProcFiles)
	srv := sdktest.Start(t, bin, sdktest.Options{Config: filepath.Join(dir, "cartera.yaml")})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 21))
	c := newClient()
	defer c.CloseIdleConnections()

	const clients, perBatch = 3, 5
	users := map[string]bool{} // every user a batch carried, acknowledged or not
	var mu sync.Mutex
	pending := make([][]byte, clients)
	next := 0
	newBatch := func() []byte {
		mu.Lock()
		defer mu.Unlock()
		batch := make([]any, perBatch)
		for i := range batch {
			u := fmt.Sprintf("ks-user-%04d", next)
			next++
			users[u] = true
			batch[i] = map[string]any{"type": "track", "event": "Signed Up", "userId": u, "messageId": "ks-" + u}
		}
		return mustJSON(t, map[string]any{"batch": batch})
	}
	var runs []string
	for range kills {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for cl := range clients {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if pending[cl] == nil {
						pending[cl] = newBatch()
					}
					status, _, _, err := post(c, srv.URL(), "/v1/batch", sdktest.WebKey, pending[cl], nil)
					if err != nil {
						return // killed: the batch goes again after the restart
					}
					if status == http.StatusOK {
						pending[cl] = nil
					} else if status != http.StatusServiceUnavailable {
						t.Errorf("batch: status %d", status)
						return
					}
					// A shop's pace, not a benchmark's: the kills, not
					// the volume, are what this tests.
					time.Sleep(10 * time.Millisecond)
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
		runs = append(runs, srv.Logs())
		srv.Restart()
	}
	// The clients' retries of what was not acknowledged when it died.
	for _, b := range pending {
		if b == nil {
			continue
		}
		if status, body, _, err := post(c, srv.URL(), "/v1/batch", sdktest.WebKey, b, nil); err != nil || status != http.StatusOK {
			t.Fatalf("final retry: %d %s %v", status, body, err)
		}
	}
	people := len(users)
	if people < kills*perBatch {
		t.Fatalf("only %d sign-ups over %d kills: the load did not run", people, kills)
	}

	// Every timer fires after the last restart: the engine counts one
	// send per person and nobody waiting.
	var got journeyCounts
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got = journeyCounts{}
		if status := journeyAdminGet(t, srv.URL(), "/v1/journeys/follow_up", &got); status != http.StatusOK {
			t.Fatalf("GET /v1/journeys/follow_up: status %d", status)
		}
		if got.Journey.Entered >= int64(people) && got.Journey.Waiting == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got.Journey.Entered != int64(people) || got.Journey.Waiting != 0 {
		t.Errorf("follow_up: entered %d, waiting %d; want %d entered, none waiting", got.Journey.Entered, got.Journey.Waiting, people)
	}
	for _, s := range got.Steps {
		if s.ID == "hello" && (s.Counts["sent"] != int64(people) || s.Counts["suppressed"] != 0) {
			t.Errorf("hello counts %v, want %d sent, none suppressed", s.Counts, people)
		}
	}

	// The outbox: each key delivered at least once over the runs, and
	// never twice within one.
	delivered := map[string]bool{}
	for _, logs := range runs {
		for _, a := range journeyActions(t, logs) {
			delivered[a.Key] = true
		}
	}
	before := len(delivered)
	for {
		n := before
		for _, a := range journeyActions(t, srv.Logs()) {
			if !delivered[a.Key] {
				n++
			}
		}
		if n >= people || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, a := range journeyActions(t, srv.Logs()) {
		delivered[a.Key] = true
	}
	runs = append(runs, srv.Logs())
	if len(delivered) != people {
		t.Errorf("%d sends delivered, want %d (one per person)", len(delivered), people)
	}
	runsOf := map[string]int{}
	for i, logs := range runs {
		inRun := map[string]bool{}
		for _, a := range journeyActions(t, logs) {
			if inRun[a.Key] {
				t.Errorf("run %d delivered %s twice", i+1, a.Key)
			}
			inRun[a.Key] = true
			runsOf[a.Key]++
		}
	}
	again := 0
	for _, n := range runsOf {
		if n > 1 {
			again++
		}
	}
	t.Logf("%d kills, %d sign-ups, %d sends; delivered again after a crash cut the first delivery short: %d", kills, people, len(delivered), again)
}
