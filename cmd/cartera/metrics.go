package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsRoute serves /metrics on the main listener behind the admin
// token, or answers 404 there when metrics have a listener of their own
// (metrics_addr): the metrics name sources, journeys and destinations,
// which are nobody else's business.
func (a *api) metricsRoute(app *fiber.App) {
	if a.metricsElsewhere {
		app.Get("/metrics", func(*fiber.Ctx) error {
			return &httpError{fiber.StatusNotFound, "metrics are served on metrics_addr"}
		})
		return
	}
	// Not a read of applied state: it answers while applying lags, when
	// the lag it shows matters most.
	app.Get("/metrics", a.adminOnly, adaptor.HTTPHandler(promhttp.HandlerFor(a.gather, promhttp.HandlerOpts{})))
}

// serveMetrics serves /metrics without authentication on addr (keep it on
// loopback or a private network) until ctx ends, and returns the address
// it listens on.
func serveMetrics(ctx context.Context, addr string, gather prometheus.Gatherer, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("metrics listener", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}
