package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// loadConfig is what a load run does.
type loadConfig struct {
	url      string
	mode     string
	clients  int
	people   int
	batch    int
	duration time.Duration
	warmup   time.Duration
	rate     float64
	webKey   string
	// adminToken and metricsURL are for reading the gateway's metrics.
	adminToken string
	metricsURL string
	posKey     string
	seed       uint64
}

func load(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c loadConfig
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "gateway base URL")
	fs.StringVar(&c.mode, "mode", "batch", "batch: POST /v1/batch; track: one event per POST /v1/track (identify, page)")
	fs.IntVar(&c.clients, "clients", 16, "concurrent clients, each with its own connection")
	fs.IntVar(&c.people, "people", 100_000, "distinct people the events are about")
	fs.IntVar(&c.batch, "batch", 100, "events per /v1/batch request")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "time before measuring (traffic flows, nothing is counted)")
	fs.Float64Var(&c.rate, "rate", 0, "events/s to offer in total (0: as fast as the gateway acknowledges)")
	fs.StringVar(&c.webKey, "web-key", "web_bench_key", "write key of the web source")
	fs.StringVar(&c.posKey, "pos-key", "pos_bench_key", "write key of the point-of-sale source")
	fs.StringVar(&c.adminToken, "admin-token", os.Getenv("CARTERA_ADMIN_TOKEN"), "admin token, sent to read /metrics (default: env CARTERA_ADMIN_TOKEN)")
	fs.StringVar(&c.metricsURL, "metrics-url", "", "the gateway's metrics when it serves them on metrics_addr (default: URL/metrics, with the admin token)")
	fs.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "random seed (of the people, events and messageIds of this run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.metricsURL == "" {
		c.metricsURL = c.url + "/metrics"
	}
	if c.mode != "batch" && c.mode != "track" {
		return fmt.Errorf("--mode: want batch or track, got %q", c.mode)
	}
	if c.mode == "track" {
		c.batch = 1
	}
	if c.clients < 1 || c.people < 1 || c.batch < 1 {
		return errors.New("--clients, --people and --batch must be positive")
	}

	hc := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        c.clients * 2,
			MaxIdleConnsPerHost: c.clients * 2,
			MaxConnsPerHost:     c.clients * 2,
			DisableCompression:  true,
		},
	}
	before, err := scrape(ctx, hc, c.metricsURL, c.adminToken)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.metricsURL, err)
	}
	scraped := time.Now()

	var measuring atomic.Bool
	stats := make([]*clientStats, c.clients)
	runCtx, stop := context.WithTimeout(ctx, c.warmup+c.duration)
	defer stop()
	var wg sync.WaitGroup
	for i := range c.clients {
		stats[i] = &clientStats{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newClient(&c, hc, i, stats[i], &measuring)
			cl.run(runCtx)
		}()
	}
	var ru0 syscall.Rusage
	var start time.Time
	select {
	case <-time.After(c.warmup):
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		start = time.Now()
		measuring.Store(true)
	case <-runCtx.Done():
	}
	<-runCtx.Done()
	measuring.Store(false)
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	after, err := scrape(context.Background(), hc, c.metricsURL, c.adminToken)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.metricsURL, err)
	}
	between := time.Since(scraped)

	var all []time.Duration
	var events, requests, failed int64
	errs := map[string]int64{}
	for _, s := range stats {
		all = append(all, s.lat...)
		events += s.events
		requests += s.requests
		failed += s.failed
		for k, v := range s.errs {
			errs[k] += v
		}
	}
	lat := summarize(all)
	cpu := func(ru syscall.Rusage) time.Duration {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	fmt.Fprintf(stdout, "mode %s, %d clients, %d people, batch %d, offered rate %s, measured %s after %s warm-up\n",
		c.mode, c.clients, c.people, c.batch, rateText(c.rate), elapsed.Round(time.Millisecond), c.warmup)
	fmt.Fprintf(stdout, "accepted: %.0f events/s (%d events in %d requests, %.0f requests/s)\n",
		float64(events)/elapsed.Seconds(), events, requests, float64(requests)/elapsed.Seconds())
	fmt.Fprintf(stdout, "ack latency: p50 %s p90 %s p99 %s max %s\n", lat.p50, lat.p90, lat.p99, lat.max)
	fmt.Fprintf(stdout, "errors: %d requests", failed)
	for _, k := range slices.Sorted(mapsKeys(errs)) {
		fmt.Fprintf(stdout, ", %s: %d", k, errs[k])
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "load generator CPU: %.2f cores\n", (cpu(ru1)-cpu(ru0)).Seconds()/elapsed.Seconds())
	report(stdout, before, after)
	reportLog(stdout, before, after, between)
	return nil
}

func rateText(r float64) string {
	if r <= 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%.0f events/s", r)
}

func mapsKeys(m map[string]int64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// clientStats are one client's counts, read after it stops.
type clientStats struct {
	lat      []time.Duration
	events   int64
	requests int64
	failed   int64
	errs     map[string]int64
}

func (s *clientStats) fail(what string) {
	if s.errs == nil {
		s.errs = map[string]int64{}
	}
	s.errs[what]++
	s.failed++
}

// client is one simulated sender: a web site or app server with its own
// connection, and the tills of a shop on the side.
type client struct {
	c         *loadConfig
	hc        *http.Client
	rng       *rand.Rand
	stats     *clientStats
	measuring *atomic.Bool
	prefix    string // of order ids: unique per run and client
	seq       uint64
	web, pos  pending
	webAuth   string
	posAuth   string
	body      []byte
}

// pending is a batch being filled for one source.
type pending struct {
	buf []byte
	n   int
}

func newClient(c *loadConfig, hc *http.Client, i int, stats *clientStats, measuring *atomic.Bool) *client {
	basic := func(key string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
	}
	return &client{
		c: c, hc: hc, stats: stats, measuring: measuring,
		rng:     rand.New(rand.NewPCG(c.seed, uint64(i))),
		prefix:  strconv.FormatUint(c.seed%1e9, 36) + "-" + strconv.Itoa(i) + "-",
		webAuth: basic(c.webKey),
		posAuth: basic(c.posKey),
	}
}

func (cl *client) run(ctx context.Context) {
	var interval time.Duration
	if cl.c.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cl.c.batch*cl.c.clients) / cl.c.rate)
	}
	next := time.Now()
	if interval > 0 {
		// Spread the clients over one interval.
		next = next.Add(time.Duration(cl.rng.Int64N(int64(interval))))
	}
	for ctx.Err() == nil {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			next = next.Add(interval)
		}
		if cl.c.mode == "track" {
			cl.sendOne(ctx)
			continue
		}
		// Fill a batch; POS events go to the shop's own batch, sent when
		// it is full too.
		for cl.web.n < cl.c.batch {
			cl.addEvent()
			if cl.pos.n == cl.c.batch {
				cl.send(ctx, "/v1/batch", cl.posAuth, cl.pos.close(), cl.pos.n)
				cl.pos.reset()
			}
		}
		cl.send(ctx, "/v1/batch", cl.webAuth, cl.web.close(), cl.web.n)
		cl.web.reset()
	}
}

func (p *pending) add(ev []byte) {
	if p.n == 0 {
		p.buf = append(p.buf[:0], `{"batch":[`...)
	} else {
		p.buf = append(p.buf, ',')
	}
	p.buf = append(p.buf, ev...)
	p.n++
}

func (p *pending) close() []byte { return append(p.buf, "]}"...) }

func (p *pending) reset() { p.buf, p.n = p.buf[:0], 0 }

// addEvent makes one event of the mix and adds it to the batch of its source.
func (cl *client) addEvent() {
	pos := false
	cl.body, pos = cl.event(cl.body[:0])
	if pos {
		cl.pos.add(cl.body)
	} else {
		cl.web.add(cl.body)
	}
}

// sendOne sends one event to the endpoint of its type.
func (cl *client) sendOne(ctx context.Context) {
	var pos bool
	cl.body, pos = cl.event(cl.body[:0])
	path := "/v1/track"
	switch {
	case bytes.HasPrefix(cl.body, []byte(`{"type":"identify"`)):
		path = "/v1/identify"
	case bytes.HasPrefix(cl.body, []byte(`{"type":"page"`)):
		path = "/v1/page"
	}
	auth := cl.webAuth
	if pos {
		auth = cl.posAuth
	}
	cl.send(ctx, path, auth, cl.body, 1)
}

func (cl *client) send(ctx context.Context, path, auth string, body []byte, events int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.c.url+path, bytes.NewReader(body))
	if err != nil {
		cl.stats.fail("request")
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	start := time.Now()
	resp, err := cl.hc.Do(req)
	var status int
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		status = resp.StatusCode
	}
	took := time.Since(start)
	if !cl.measuring.Load() {
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			cl.stats.fail("transport")
		}
		return
	}
	cl.stats.requests++
	if status != http.StatusOK {
		cl.stats.fail("http_" + strconv.Itoa(status))
		return
	}
	cl.stats.events += int64(events)
	cl.stats.lat = append(cl.stats.lat, took)
}

var (
	categories = []string{"shoes", "boots", "bags", "socks", "sandals"}
	pages      = []string{"/", "/c/shoes", "/c/boots", "/c/bags", "/sale"}
)

// event appends one event of the mix to b; pos says it comes from a till.
//
// The mix, per 100 events: 38 anonymous product views, 8 anonymous pages,
// 10 cart adds (half anonymous), 4 checkouts, 8 identifies linking the
// person's anonymous id, email and consent to the user id (the first one
// merges the anonymous profile into the known one), 8 web orders, 5 POS
// orders (user id and loyalty card), 4 email opens and 15 signed-in views.
func (cl *client) event(b []byte) ([]byte, bool) {
	cl.seq++
	p := cl.rng.IntN(cl.c.people)
	r := cl.rng.IntN(100)
	pos := false
	price := 10 + cl.rng.IntN(140)
	switch {
	case r < 38 || r >= 85:
		b = cl.head(b, "track", p, r < 38)
		b = append(b, `,"event":"Product Viewed","properties":{"product_id":"sku-`...)
		b = strconv.AppendInt(b, int64(cl.rng.IntN(2000)), 10)
		b = append(b, `","category":"`...)
		b = append(b, categories[cl.rng.IntN(len(categories))]...)
		b = append(b, `","price":`...)
		b = strconv.AppendInt(b, int64(price), 10)
		b = append(b, `.9}`...)
	case r < 46:
		b = cl.head(b, "page", p, true)
		b = append(b, `,"name":"Category","properties":{"path":"`...)
		b = append(b, pages[cl.rng.IntN(len(pages))]...)
		b = append(b, `"}`...)
	case r < 56:
		b = cl.head(b, "track", p, r%2 == 0)
		b = append(b, `,"event":"Product Added","properties":{"cart_id":"c-`...)
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `","product_id":"sku-`...)
		b = strconv.AppendInt(b, int64(cl.rng.IntN(2000)), 10)
		b = append(b, `","price":`...)
		b = strconv.AppendInt(b, int64(price), 10)
		b = append(b, `.9,"quantity":1}`...)
	case r < 60:
		b = cl.head(b, "track", p, false)
		b = append(b, `,"event":"Checkout Started","properties":{"cart_id":"c-`...)
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `","value":`...)
		b = strconv.AppendInt(b, int64(price), 10)
		b = append(b, `.9}`...)
	case r < 68:
		b = cl.head(b, "identify", p, false)
		b = append(b, `,"anonymousId":"a-`...)
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `","traits":{"email":"Person.`...)
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `@Example.com","first_name":"Ana","plan":"member","consent":{"email":`...)
		b = strconv.AppendBool(b, p%4 != 0)
		b = append(b, `,"ads":`...)
		b = strconv.AppendBool(b, p%3 != 0)
		b = append(b, `}}`...)
	case r < 76:
		b = cl.head(b, "track", p, false)
		b = append(b, `,"event":"Order Completed","properties":{"order_id":"o-`...)
		b = append(b, cl.prefix...)
		b = strconv.AppendUint(b, cl.seq, 10)
		b = append(b, `","revenue":`...)
		b = strconv.AppendInt(b, int64(price*2), 10)
		b = append(b, `.5,"currency":"EUR","channel":"web","products":[{"sku":"sku-1","price":`...)
		b = strconv.AppendInt(b, int64(price), 10)
		b = append(b, `,"quantity":2}]}`...)
	case r < 81:
		pos = true
		b = cl.head(b, "track", p, false)
		b = append(b, `,"event":"Order Completed","context":{"traits":{"loyalty_card":"7000 `...)
		b = strconv.AppendInt(b, int64(1_000_000+p), 10)
		b = append(b, `"}},"properties":{"order_id":"t-`...)
		b = append(b, cl.prefix...)
		b = strconv.AppendUint(b, cl.seq, 10)
		b = append(b, `","revenue":`...)
		b = strconv.AppendInt(b, int64(price), 10)
		b = append(b, `.0,"currency":"EUR","channel":"pos","store_id":"madrid-01"}`...)
	default:
		b = cl.head(b, "track", p, false)
		b = append(b, `,"event":"Email Opened","properties":{"journey":"cart_abandonment","template":"cart_reminder"}`...)
	}
	b = append(b, '}')
	return b, pos
}

// appendUUID appends a random version 4 UUID, the messageId Segment's
// SDKs send (analytics-node uses one): random ids make the gateway's
// messageId index take a random B-tree page per event, as in production.
func (cl *client) appendUUID(b []byte) []byte {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], cl.rng.Uint64())
	binary.LittleEndian.PutUint64(u[8:], cl.rng.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var h [36]byte
	hex.Encode(h[0:8], u[0:4])
	h[8] = '-'
	hex.Encode(h[9:13], u[4:6])
	h[13] = '-'
	hex.Encode(h[14:18], u[6:8])
	h[18] = '-'
	hex.Encode(h[19:23], u[8:10])
	h[23] = '-'
	hex.Encode(h[24:], u[10:])
	return append(b, h[:]...)
}

// head starts an event: type, messageId, the person's id and the time.
func (cl *client) head(b []byte, typ string, p int, anonymous bool) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","messageId":"`...)
	b = cl.appendUUID(b)
	if anonymous {
		b = append(b, `","anonymousId":"a-`...)
	} else {
		b = append(b, `","userId":"u-`...)
	}
	b = strconv.AppendInt(b, int64(p), 10)
	b = append(b, `","timestamp":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
