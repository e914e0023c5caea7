package wallet_test

import (
	"context"
	"fmt"
	"testing"

	"cartera/profiles"
	"cartera/wallet"
)

// benchPasses issues n passes and returns them.
func benchPasses(b *testing.B, h *harness, n int) []*wallet.Pass {
	b.Helper()
	out := make([]*wallet.Pass, n)
	for i := range out {
		res, err := h.store.Ingest(context.Background(), []*profiles.Event{{Type: profiles.TypeIdentify, MessageID: fmt.Sprintf("b%d", i), UserID: fmt.Sprintf("u%d", i), Timestamp: t0, Source: "bench"}})
		if err != nil {
			b.Fatal(err)
		}
		if out[i], _, err = h.svc.Issue(context.Background(), res[0].ProfileID, ""); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// BenchmarkPKPassFresh signs passes that are not in the cache: one
// pass.json, manifest and RSA-2048 signature each, on every core.
func BenchmarkPKPassFresh(b *testing.B) {
	h := newHarness(b)
	passes := benchPasses(b, h, 64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p := passes[i%len(passes)].Clone()
			p.Tag = uint64(1_000_000 + i) // a new version: never cached
			if _, err := h.svc.PKPass(p); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "passes/s")
}

// BenchmarkPKPassCached serves unchanged passes again.
func BenchmarkPKPassCached(b *testing.B) {
	h := newHarness(b)
	passes := benchPasses(b, h, 64)
	for _, p := range passes {
		if _, err := h.svc.PKPass(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p, err := h.svc.Authorize(h.chain.PassTypeID, passes[i%len(passes)].Serial, passes[i%len(passes)].Token)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := h.svc.PKPass(p); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "passes/s")
}
