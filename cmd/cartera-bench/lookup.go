package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// lookup times single-profile reads, GET /v1/profiles/user_id:u-N.
func lookup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "gateway base URL")
	token := fs.String("admin-token", "bench-admin-token-0123456789", "admin token")
	people := fs.Int("people", 1_000_000, "look up u-0 … u-(people-1)")
	requests := fs.Int("requests", 20_000, "lookups in all")
	clients := fs.Int("clients", 1, "concurrent clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
	lat := make([][]time.Duration, *clients)
	notFound, failed := make([]int, *clients), make([]int, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			for range *requests / *clients {
				if ctx.Err() != nil {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *url+"/v1/profiles/user_id:u-"+strconv.Itoa(rng.IntN(*people)), nil)
				req.Header.Set("Authorization", "Bearer "+*token)
				t := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					failed[i]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				lat[i] = append(lat[i], time.Since(t))
				switch resp.StatusCode {
				case http.StatusOK:
				case http.StatusNotFound:
					notFound[i]++
				default:
					failed[i]++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	nf, fl := 0, 0
	for i := range *clients {
		all = append(all, lat[i]...)
		nf += notFound[i]
		fl += failed[i]
	}
	fmt.Fprintf(stdout, "%d lookups from %d clients over %d people in %s (%.0f/s): %s; not found %d, failed %d\n",
		len(all), *clients, *people, elapsed.Round(time.Millisecond), float64(len(all))/elapsed.Seconds(), summarize(all), nf, fl)
	return nil
}
