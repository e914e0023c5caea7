package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"cartera/internal/sdktest"
)

// The harness of the browser test: the pages' server, a recording proxy,
// Chromium with its network log, and readers of the gateway's answers.

// readmeGateway is the gateway URL the README's snippets hold; the test
// puts the gateway's real URL in its place.
const readmeGateway = "https://cartera.shoes.example"

// readmeSnippet returns the page snippet of an SDK as the README gives it:
// the html block after the line "<!-- snippet: NAME -->".
func readmeSnippet(sdk string) (string, error) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		return "", err
	}
	_, after, ok := strings.Cut(string(b), "<!-- snippet: "+sdk+" -->\n```html\n")
	if !ok {
		return "", fmt.Errorf("README.md has no snippet %q (a line <!-- snippet: %s --> followed by an html block)", sdk, sdk)
	}
	snippet, _, ok := strings.Cut(after, "\n```\n")
	if !ok || !strings.Contains(snippet, readmeGateway) {
		return "", fmt.Errorf("README.md: the %s snippet is not closed or does not hold the gateway URL %s", sdk, readmeGateway)
	}
	return snippet, nil
}

// pageServer serves the shop's pages, config.js (the gateway's address
// and the write key, as a shop would paste them) and the SDKs' files from
// node_modules, on an origin of its own.
func pageServer(t *testing.T, gateway func() string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for prefix, dir := range sdkDirs {
		mux.Handle(prefix, http.StripPrefix(prefix, http.FileServer(http.Dir(dir))))
	}
	mux.HandleFunc("/config.js", func(w http.ResponseWriter, r *http.Request) {
		g := gateway()
		u, err := url.Parse(g)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		cfg, _ := json.Marshal(map[string]string{
			"gateway": g, "apiHost": u.Host + "/v1", "protocol": u.Scheme, "writeKey": sdktest.WebKey,
		})
		w.Header().Set("Content-Type", "text/javascript")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, `window.CARTERA = %s;
(function (q) {
  // ?batching: analytics-next's batching delivery, flushed when the page is left.
  if (q.has('batching')) CARTERA.segmentDelivery = { deliveryStrategy: { strategy: 'batching', config: { size: 100, timeout: 600000 } } };
  // ?beacon: analytics-js's beacon transport, flushed when the page is left.
  if (q.has('beacon')) CARTERA.rudderOptions = { useBeacon: true, beaconQueueOptions: { maxItems: 100, flushQueueInterval: 600000 } };
  // ?batch: analytics-js's batching of its XHR queue, two events a batch.
  if (q.has('batch')) CARTERA.rudderOptions = { queueOptions: { batch: { enabled: true, maxItems: 2, flushInterval: 600000 } } };
})(new URLSearchParams(location.search));
`, cfg)
	})
	mux.HandleFunc("/readme/", func(w http.ResponseWriter, r *http.Request) {
		sdk := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/readme/"), ".html")
		snippet, err := readmeSnippet(sdk)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n<title>Cartera Shoes</title>\n%s\n</head>\n<body>\n<h1>Running shoes</h1>\n<script src=\"/hooks-%s.js\"></script>\n</body>\n</html>\n",
			strings.ReplaceAll(snippet, readmeGateway, gateway()), sdk)
	})
	mux.Handle("/", http.FileServer(http.Dir("pages")))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// browser is one headless Chromium with a fresh profile, recording every
// request it makes and what its pages log.
type browser struct {
	alloc context.Context

	mu       sync.Mutex
	requests []request
	console  []string
}

// request is one request the browser made, as DevTools reports it.
type request struct {
	id         network.RequestID
	method     string
	url        string
	status     int64
	failed     string // net error text, or the CORS error
	corsFailed bool
}

func newBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	// The first context starts the browser; tabs open beside it.
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return &browser{alloc: root}
}

// tab opens a tab in a browser context of its own (own cookies and
// storage: a new visitor), with the network recorded.
func (b *browser) tab(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.alloc, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	enable := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	})
	if err := chromedp.Do(ctx, enable); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	find := func(id network.RequestID) *request {
		for i := len(b.requests) - 1; i >= 0; i-- {
			if b.requests[i].id == id {
				return &b.requests[i]
			}
		}
		return nil
	}
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, request{id: ev.RequestID, method: ev.Request.Method, url: ev.Request.URL})
	case *network.EventResponseReceived:
		if r := find(ev.RequestID); r != nil {
			r.status = ev.Response.Status
		}
	case *network.EventLoadingFailed:
		if r := find(ev.RequestID); r != nil {
			r.failed = ev.ErrorText
			if ev.CorsErrorStatus != nil {
				r.corsFailed = true
				r.failed += " CORS " + string(ev.CorsErrorStatus.CorsError)
			}
		}
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		b.console = append(b.console, string(ev.Type)+": "+strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.console = append(b.console, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	}
}

// log is what the browser did, for a failing test.
func (b *browser) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, r := range b.requests {
		fmt.Fprintf(&s, "  %s %s -> %d %s\n", r.method, r.url, r.status, r.failed)
	}
	for _, c := range b.console {
		fmt.Fprintf(&s, "  console %s\n", c)
	}
	return s.String()
}

// requestsTo returns the requests made to a base URL.
func (b *browser) requestsTo(base string) []request {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []request
	for _, r := range b.requests {
		if strings.HasPrefix(r.url, base+"/") {
			out = append(out, r)
		}
	}
	return out
}

// offMachine returns the requests to anything but this machine's loopback:
// the SDKs must load and send with no CDN or SaaS.
func (b *browser) offMachine() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests {
		u, err := url.Parse(r.url)
		if err != nil {
			out = append(out, r.url)
			continue
		}
		switch u.Scheme {
		case "data", "blob", "about", "chrome", "devtools":
			continue
		}
		if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
			out = append(out, r.url)
		}
	}
	return out
}

// eval runs a page's async function and decodes its result into out.
func (b *browser) eval(t *testing.T, ctx context.Context, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v\nbrowser:\n%s", expr, err, b.log())
	}
	if len(raw) == 0 {
		raw = []byte("null")
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("evaluate %s: decode %s: %v", expr, raw, err)
	}
}

func (b *browser) navigate(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate to %s: %v\nbrowser:\n%s", u, err, b.log())
	}
}

// eventually polls check until it returns "" (all is well), and fails the
// test with its last complaint when the deadline passes. Delivery from a
// browser is asynchronous (SDK queues, beacons on page hide), so the test
// waits for the outcome rather than for a time.
func eventually(t *testing.T, b *browser, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s\nbrowser:\n%s", what, msg, b.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// profileState is the part of the admin API's profile the test reads.
type profileState struct {
	*sdktest.Profile
	Computed map[string]any `json:"-"`
	Journeys []struct {
		Journey string `json:"journey"`
		Key     string `json:"key"`
	} `json:"-"`
}

func getProfile(t *testing.T, srv *sdktest.Server, ident string) *profileState {
	t.Helper()
	p, _ := srv.GetProfile(t, ident, 200)
	if p == nil {
		return nil
	}
	ps := &profileState{Profile: p}
	b, _ := json.Marshal(p.Fields)
	var extra struct {
		Computed map[string]any `json:"computed"`
		Journeys []struct {
			Journey string `json:"journey"`
			Key     string `json:"key"`
		} `json:"journeys"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		t.Fatal(err)
	}
	ps.Computed, ps.Journeys = extra.Computed, extra.Journeys
	return ps
}

// names lists a profile's events sent by the SDK as "type name".
func (p *profileState) names(source string) []string {
	var out []string
	for _, e := range p.Events {
		if e.Source != source {
			continue
		}
		name := e.Event
		if e.Type != "track" {
			name = e.Name
		}
		out = append(out, strings.TrimSpace(e.Type+" "+name))
	}
	slices.Sort(out)
	return out
}

func (p *profileState) inJourney(id string) bool {
	for _, j := range p.Journeys {
		if j.Journey == id {
			return true
		}
	}
	return false
}

// rawEvent finds a stored event by type and name, with its context.
func (p *profileState) rawEvent(typ, name string) map[string]any {
	events, _ := p.Fields["events"].([]any)
	for _, e := range events {
		m, _ := e.(map[string]any)
		if m["type"] == typ && (m["event"] == name || m["name"] == name) {
			return m
		}
	}
	return nil
}

// knownCustomer records Ana as the shop's systems know her: an account
// created in the app, before she ever visits the website.
func knownCustomer(t *testing.T, srv *sdktest.Server, userID, email string) string {
	t.Helper()
	// A VIP: her cart takes the cart journey's priority branch, so she is
	// still in the journey when the test looks (the example's
	// reminder_timing experiment ends a tenth of people at once).
	body := fmt.Sprintf(`{"userId":%q,"traits":{"email":%q,"first_name":"Ana","vip":true,"timezone":"Europe/Madrid"}}`, userID, email)
	req, err := http.NewRequest("POST", srv.URL()+"/v1/identify", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(sdktest.AppKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
		t.Fatalf("identify the known customer: %d %s", resp.StatusCode, b)
	}
	return srv.MustProfile(t, "user_id:"+userID, 1).ID
}

// recordingProxy forwards to the gateway and notes "METHOD path" of each
// request.
func recordingProxy(t *testing.T, gateway func() string) (*httptest.Server, func() []string) {
	t.Helper()
	var (
		mu    sync.Mutex
		paths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := url.Parse(gateway())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(paths)
	}
}

// rejected reads a counter of refused events from /metrics.
func rejected(t *testing.T, srv *sdktest.Server, source, reason string) int {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sdktest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := fmt.Sprintf(`cartera_events_rejected_total{reason=%q,source=%q} `, reason, source)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			var n float64
			fmt.Sscan(v, &n)
			return int(n)
		}
	}
	return 0
}
