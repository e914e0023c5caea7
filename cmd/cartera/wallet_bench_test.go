package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// benchPasses issues n passes through the HTTP API and returns their
// download paths.
func benchPasses(b *testing.B, s *server, n int) []string {
	b.Helper()
	// People of their own, so each run issues new passes.
	run := newMessageID()
	for i := 0; i < n; i += 100 {
		var batch []string
		for j := i; j < min(i+100, n); j++ {
			batch = append(batch, fmt.Sprintf(`{"type":"identify","userId":"b%s-%d","traits":{"first_name":"B"}}`, run, j))
		}
		mustOK(b, s.send(b, "web_dev_write_key", "/v1/batch", `{"batch":[`+strings.Join(batch, ",")+`]}`))
	}
	paths := make([]string, n)
	for i := range paths {
		r := s.admin(b, "POST", fmt.Sprintf("/v1/profiles/user_id:b%s-%d/passes", run, i))
		if r.status != 201 {
			b.Fatalf("issue: %d %s", r.status, r.raw)
		}
		u, err := url.Parse(r.body["apple_url"].(string))
		if err != nil {
			b.Fatal(err)
		}
		paths[i] = u.RequestURI()
	}
	return paths
}

// BenchmarkWalletHTTP downloads signed passes through the HTTP API on
// every core: fresh (each pass's first download signs it) and cached
// (unchanged passes served again).
func BenchmarkWalletHTTP(b *testing.B) {
	s := startServer(b, map[string]string{"CARTERA_LIMITS": "off"}) // one client as fast as it can
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(path string) error {
		resp, err := client.Get(s.base + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.apple.pkpass" {
			return fmt.Errorf("download: %s", resp.Status)
		}
		return nil
	}
	run := func(b *testing.B, paths []string) {
		var next atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := get(paths[int(next.Add(1)-1)%len(paths)]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "passes/s")
	}
	var issued []string
	b.Run("fresh", func(b *testing.B) {
		b.StopTimer()
		// Passes never downloaded before: every request signs.
		paths := benchPasses(b, s, b.N)
		issued = append(issued, paths...)
		b.StartTimer()
		run(b, paths)
	})
	b.Run("cached", func(b *testing.B) {
		if len(issued) == 0 {
			b.Skip("no passes")
		}
		run(b, issued)
	})
}
