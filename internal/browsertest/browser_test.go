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
	"os/exec"
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

var bin string

func TestMain(m *testing.M) { sdktest.Main(m, &bin) }

// The npm packages under test; package.json pins their versions.
const (
	segmentPackage = "@segment/analytics-next"
	rudderPackage  = "@rudderstack/analytics-js"
)

// Where the pages load each SDK's browser build from, inside node_modules.
var sdkDirs = map[string]string{
	// analytics-next's UMD build; its lazy chunks sit beside it.
	"/analytics-next/bundles/": "node_modules/@segment/analytics-next/dist/umd",
	// analytics-js with its plugins bundled in (the default build would
	// fetch them from RudderStack's CDN).
	"/rudderstack/": "node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd",
}

// browserAndSDKs returns the chromium binary, or skips the test when the
// browser or the npm packages are missing, unless CARTERA_BROWSER_TEST=1
// says they must be there (make test sets it), in which case it fails.
func browserAndSDKs(t *testing.T) string {
	t.Helper()
	required := os.Getenv("CARTERA_BROWSER_TEST") == "1"
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if required {
			t.Fatalf("CARTERA_BROWSER_TEST=1 but %s", msg)
		}
		t.Skipf("skipping the browser SDK test: %s (install Debian's chromium and run `make sdk`; CARTERA_BROWSER_TEST=1 makes this a failure)", msg)
	}
	chromium := os.Getenv("CARTERA_CHROMIUM")
	if chromium == "" {
		var err error
		if chromium, err = exec.LookPath("chromium"); err != nil {
			missing("chromium is not on PATH")
		}
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatalf("package.json: %v", err)
	}
	for _, name := range []string{segmentPackage, rudderPackage} {
		installed, err := os.ReadFile(filepath.Join("node_modules", name, "package.json"))
		if err != nil {
			missing("%s is not installed in internal/browsertest/node_modules", name)
		}
		var inst struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(installed, &inst); err != nil {
			t.Fatalf("node_modules/%s/package.json: %v", name, err)
		}
		// A stale node_modules would test another SDK than the one pinned.
		if want := pkg.Dependencies[name]; inst.Version != want {
			t.Fatalf("node_modules holds %s %s, package.json pins %q: run npm ci in internal/browsertest", name, inst.Version, want)
		}
	}
	for _, dir := range sdkDirs {
		if _, err := os.Stat(filepath.Join(dir, "index.js")); err != nil {
			t.Fatalf("the browser build is not where the test serves it from: %v", err)
		}
	}
	return chromium
}

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
	body := fmt.Sprintf(`{"userId":%q,"traits":{"email":%q,"first_name":"Ana","timezone":"Europe/Madrid"}}`, userID, email)
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

// TestBrowserSDKs is seed 000 from a shop's website: an anonymous visitor
// arrives from a newsletter, browses, signs in (and becomes the customer
// the shop already knows) and adds to the cart, with each SDK as a shop
// would paste it (the README's snippets themselves), in Chromium, on an
// origin the web source allows. One profile holds it all, the campaign
// feeds the first-touch traits, the banner's consent lands, and the cart
// abandonment journey starts. A visitor who declines sends nothing; the
// SDKs' batching and page-leave transports arrive; a page on an origin the
// source does not allow gets nothing stored.
func TestBrowserSDKs(t *testing.T) {
	chromium := browserAndSDKs(t)
	var srv *sdktest.Server
	gateway := func() string { return srv.URL() }
	shop := pageServer(t, gateway)
	intruder := pageServer(t, gateway)
	// A second shop whose pages reach the gateway through a proxy that
	// notes each request's path: DevTools does not see the requests a page
	// makes while it unloads.
	proxy, proxied := recordingProxy(t, gateway)
	shopViaProxy := pageServer(t, func() string { return proxy.URL })
	srv = sdktest.Start(t, bin, sdktest.Options{Env: map[string]string{
		"CARTERA_ALLOWED_ORIGINS": "web=" + shop.URL + ",web=" + shopViaProxy.URL,
	}})
	br := newBrowser(t, chromium)

	sdks := []struct {
		name string
		// reportsDelivery: the SDK's calls answer with the delivery's
		// outcome and messageId (analytics-next).
		reportsDelivery bool
	}{
		{name: "segment", reportsDelivery: true},
		{name: "rudderstack"},
	}
	for _, sdk := range sdks {
		if _, err := readmeSnippet(sdk.name); err != nil {
			t.Fatal(err)
		}
	}
	for _, sdk := range sdks {
		t.Run(sdk.name, func(t *testing.T) {
			userID, email := "ana-"+sdk.name, "ana."+sdk.name+"@example.com"
			knownID := knownCustomer(t, srv, userID, email)

			tab := br.tab(t)
			page := shop.URL + "/readme/" + sdk.name + ".html"
			br.navigate(t, tab, page+"?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale")
			// The banner: analytics and ads accepted, nothing said of email.
			var out any
			br.eval(t, tab, "window.cartera.consent({analytics: true, ads: true})", &out)
			var anon string
			br.eval(t, tab, "window.cartera.anonymousId()", &anon)
			if anon == "" {
				t.Fatalf("the SDK has no anonymous id\nbrowser:\n%s", br.log())
			}

			// 1. Anonymous browsing lands on a profile of its own.
			var outcomes []struct{ MessageID, Failed string }
			br.eval(t, tab, "window.cartera.browse()", &outcomes)
			if sdk.reportsDelivery && len(outcomes) != 2 {
				t.Errorf("the SDK answered %d outcomes for page and track, want 2", len(outcomes))
			}
			for _, o := range outcomes {
				if o.Failed != "" {
					t.Errorf("the SDK reports a failed delivery: %s", o.Failed)
				}
			}
			var anonProfile *profileState
			eventually(t, br, "anonymous browsing", func() string {
				anonProfile = getProfile(t, srv, "anonymous_id:"+anon)
				if anonProfile == nil {
					return "no profile for anonymous_id:" + anon
				}
				if got := anonProfile.names("web"); !slices.Equal(got, []string{"page Home", "track Consent Updated", "track Product Viewed"}) {
					return fmt.Sprintf("events %v, want page Home, track Consent Updated and track Product Viewed", got)
				}
				return ""
			})
			for _, o := range outcomes {
				if anonProfile.EventByMessageID(o.MessageID) == nil {
					t.Errorf("no stored event has the messageId %q the SDK reported", o.MessageID)
				}
			}
			if anonProfile.ID == knownID || anonProfile.HasIdentity("user_id", userID) {
				t.Errorf("the anonymous visitor is already the known customer before signing in")
			}
			// The browser's context is on the event, and the campaign feeds
			// the first-touch traits.
			if e := anonProfile.rawEvent("page", "Home"); e == nil {
				t.Errorf("no page event among %v", anonProfile.names("web"))
			} else {
				ctx, _ := e["context"].(map[string]any)
				pg, _ := ctx["page"].(map[string]any)
				campaign, _ := ctx["campaign"].(map[string]any)
				if u, _ := pg["url"].(string); !strings.HasPrefix(u, page) {
					t.Errorf("context.page.url %q, want the shop's page", u)
				}
				if ua, _ := ctx["userAgent"].(string); !strings.Contains(ua, "Chrome") {
					t.Errorf("context.userAgent %q, want Chromium's", ua)
				}
				if ctx["locale"] == nil || ctx["timezone"] == nil {
					t.Errorf("context %v: want locale and timezone", ctx)
				}
				if campaign["source"] != "newsletter" || campaign["name"] != "spring_sale" || campaign["medium"] != "email" {
					t.Errorf("context.campaign %v, want the page's UTM parameters", campaign)
				}
			}
			if anonProfile.Computed["first_touch_source"] != "newsletter" || anonProfile.Computed["first_touch_campaign"] != "spring_sale" {
				t.Errorf("computed first touch %v / %v, want newsletter / spring_sale", anonProfile.Computed["first_touch_source"], anonProfile.Computed["first_touch_campaign"])
			}

			// 2. Signing in merges the visitor into the known customer; 3.
			// the cart starts the journey.
			br.eval(t, tab, fmt.Sprintf("window.cartera.signIn(%q, {email: %q})", userID, email), &out)
			br.eval(t, tab, `window.cartera.addToCart({cart_id: "cart-`+sdk.name+`", product_id: "shoe-42", price: 89.9, quantity: 1})`, &out)
			eventually(t, br, "sign-in and cart", func() string {
				byAnon := getProfile(t, srv, "anonymous_id:"+anon)
				byUser := getProfile(t, srv, "user_id:"+userID)
				byEmail := getProfile(t, srv, "email:"+email)
				switch {
				case byAnon == nil || byUser == nil || byEmail == nil:
					return "a profile is missing"
				case byAnon.ID != byUser.ID || byUser.ID != byEmail.ID:
					return fmt.Sprintf("by anonymous_id %s, by user_id %s, by email %s: want one profile", byAnon.ID, byUser.ID, byEmail.ID)
				case !slices.Equal(byUser.names("web"), []string{"identify", "page Home", "track Consent Updated", "track Product Added", "track Product Viewed"}):
					return fmt.Sprintf("web events %v, want the visit's five", byUser.names("web"))
				case !slices.Equal(byUser.names("app"), []string{"identify"}):
					return fmt.Sprintf("app events %v, want the known customer's identify", byUser.names("app"))
				case !byUser.inJourney("cart_abandonment"):
					return fmt.Sprintf("journeys %v, want cart_abandonment started", byUser.Journeys)
				}
				if byUser.Traits["first_name"] != "Ana" || byUser.Computed["first_touch_source"] != "newsletter" {
					return fmt.Sprintf("traits %v computed %v: want the known customer's and the visit's", byUser.Traits, byUser.Computed)
				}
				consent, _ := byUser.Fields["consent"].(map[string]any)
				ads, _ := consent["ads"].(map[string]any)
				if ads["granted"] != true || consent["email"] != nil {
					return fmt.Sprintf("consent %v: want ads granted from the banner and email untouched", consent)
				}
				return ""
			})
			if off := br.offMachine(); len(off) > 0 {
				t.Errorf("the browser reached off this machine (a CDN?): %v", off)
			}
			for _, r := range br.requestsTo(srv.URL()) {
				if r.corsFailed {
					t.Errorf("%s %s failed CORS: %s", r.method, r.url, r.failed)
				}
			}
		})
	}

	// A visitor who declines: the README's snippet never loads the SDK, and
	// nothing leaves the page, not even on leaving it.
	for _, sdk := range sdks {
		t.Run(sdk.name+" declined", func(t *testing.T) {
			// Through the proxy, which sees the requests of a page that unloads.
			before := len(proxied())
			tab := br.tab(t)
			br.navigate(t, tab, shopViaProxy.URL+"/readme/"+sdk.name+".html?utm_source=newsletter")
			var out any
			br.eval(t, tab, "window.cartera.consent({analytics: false, ads: true, email: true})", &out)
			br.eval(t, tab, "window.cartera.tryTrack()", &out)
			var loaded bool
			br.eval(t, tab, "window.cartera.loaded()", &loaded)
			br.navigate(t, tab, shopViaProxy.URL+"/leave.html")
			if loaded {
				t.Errorf("the SDK loaded although the visitor declined")
			}
			if paths := proxied(); len(paths) != before {
				t.Errorf("requests to the gateway after declining: %v", paths[before:])
			}
		})
	}

	// analytics-js's batching mode: two events, one POST to /v1/batch.
	t.Run("rudderstack batch", func(t *testing.T) {
		tab := br.tab(t)
		before := len(proxied())
		br.navigate(t, tab, shopViaProxy.URL+"/rudder.html?batch")
		var anon string
		br.eval(t, tab, "window.cartera.anonymousId()", &anon)
		var out any
		br.eval(t, tab, `window.cartera.track("Cart Viewed", {cart_id: "c-batch"})`, &out)
		br.eval(t, tab, `window.cartera.track("Checkout Started", {cart_id: "c-batch"})`, &out)
		eventually(t, br, "batch delivery", func() string {
			p := getProfile(t, srv, "anonymous_id:"+anon)
			if p == nil || !slices.Equal(p.names("web"), []string{"track Cart Viewed", "track Checkout Started"}) {
				return "no Cart Viewed and Checkout Started on anonymous_id:" + anon
			}
			return ""
		})
		if paths := proxied()[before:]; !slices.Contains(paths, "POST /v1/batch") || slices.Contains(paths, "POST /v1/track") {
			t.Errorf("requests through the proxy %v, want the events in a POST to /v1/batch", paths)
		}
	})

	// Unload delivery: analytics-next's batching mode flushes with a
	// keepalive fetch to /v1/b when the page is left, analytics-js's beacon
	// transport with navigator.sendBeacon to /beacon/v1/batch.
	for _, sdk := range []struct{ name, page, path string }{
		{"segment batching", "segment.html?batching", "/v1/b"},
		{"rudderstack beacon", "rudder.html?beacon", "/beacon/v1/batch"},
	} {
		t.Run(sdk.name, func(t *testing.T) {
			tab := br.tab(t)
			br.navigate(t, tab, shopViaProxy.URL+"/"+sdk.page)
			var anon string
			br.eval(t, tab, "window.cartera.anonymousId()", &anon)
			var out any
			// Not awaited: in batching mode the SDK's promise waits for the flush.
			br.eval(t, tab, `(window.cartera.track("Cart Viewed", {cart_id: "c-unload"}), null)`, &out)
			if p := getProfile(t, srv, "anonymous_id:"+anon); p != nil {
				t.Fatalf("the event arrived before the page was left: the test would prove nothing")
			}
			br.navigate(t, tab, shopViaProxy.URL+"/leave.html")
			eventually(t, br, "delivery on page hide", func() string {
				p := getProfile(t, srv, "anonymous_id:"+anon)
				if p == nil || !slices.Contains(p.names("web"), "track Cart Viewed") {
					return "no Cart Viewed on anonymous_id:" + anon
				}
				return ""
			})
			if paths := proxied(); !slices.Contains(paths, "POST "+sdk.path) {
				t.Errorf("requests through the proxy %v, want a POST to %s", paths, sdk.path)
			}
		})
	}

	t.Run("origin not allowed", func(t *testing.T) {
		tab := br.tab(t)
		br.navigate(t, tab, intruder.URL+"/intruder.html")
		var got struct {
			Preflighted, Simple string
			Beacon              bool
		}
		br.eval(t, tab, "window.cartera.intrude()", &got)
		// The answers are hidden from the page.
		if !strings.HasPrefix(got.Preflighted, "error") || !strings.HasPrefix(got.Simple, "error") {
			t.Errorf("the page read the gateway's answers: %+v", got)
		}
		// The gateway saw and refused the two requests that need no
		// preflight (the other never left the browser), and stored nothing.
		eventually(t, br, "refusals", func() string {
			if n := rejected(t, srv, "web", "origin"); n < 2 {
				return fmt.Sprintf("cartera_events_rejected_total{source=web,reason=origin} = %d, want 2 (simple POST and beacon)", n)
			}
			return ""
		})
		for _, id := range []string{"intruder-preflight", "intruder-simple", "intruder-beacon"} {
			if p, status := srv.GetProfile(t, "anonymous_id:"+id, 1); p != nil || status != 404 {
				t.Errorf("anonymous_id:%s: status %d, want 404: nothing stored", id, status)
			}
		}
		preflightRefused := false
		for _, r := range br.requestsTo(srv.URL()) {
			if r.corsFailed && strings.Contains(r.failed, "Preflight") {
				preflightRefused = true
			}
		}
		if !preflightRefused {
			t.Errorf("Chromium reported no refused preflight\nbrowser:\n%s", br.log())
		}
	})
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
