package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"cartera/cmd/cartera/console"
	"cartera/internal/smtptest"
)

// newBrowser starts headless Chromium for the test, closed at its end.
func newBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	return ctx
}

// chromiumPath finds Debian's chromium. Without it the browser test skips,
// unless CARTERA_BROWSER_TEST=1 (make test) says it must run.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CARTERA_CHROMIUM")
	if p == "" {
		var err error
		if p, err = exec.LookPath("chromium"); err != nil {
			if os.Getenv("CARTERA_BROWSER_TEST") == "1" {
				t.Fatal("CARTERA_BROWSER_TEST=1 but chromium is not on PATH (apt-get install chromium)")
			}
			t.Skip("chromium is not on PATH; CARTERA_BROWSER_TEST=1 makes this a failure")
		}
	}
	return p
}

// TestConsoleInBrowser drives the console in headless Chromium as each
// role. With CARTERA_CONSOLE_SCREENSHOTS=1 it saves a screenshot of each
// page to docs/console/.
func TestConsoleInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	// Mail goes to a relay that can be made slow, to hold a message in
	// flight for the Outbox page.
	relay := smtptest.StartWith(t, smtptest.Options{User: dlSMTPUser, Pass: dlSMTPPass})
	r := startConsole(t, map[string]string{"CARTERA_SMTP_URL": relay.URL, "CARTERA_SMTP_CA_FILE": relay.CAFile})
	// Ana is a VIP: her cart takes the priority branch, not the example's
	// reminder_timing experiment, whose control arm (a tenth of people,
	// by profile id) would end her instance at once.
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/identify", `{"userId":"u-ana","traits":{"email":"ana@example.com","phone":"+34600111221","first_name":"Ana","loyalty_card":"4000 1234","vip":true,"consent":{"email":true,"sms":false,"ads":true}}}`))
	mustOK(t, r.send(t, "app_dev_write_key", "/v1/track", `{"userId":"u-ana","event":"Product Viewed","properties":{"product_id":"shoe-42","category":"running"}}`))
	mustOK(t, r.send(t, "app_dev_write_key", "/v1/track", `{"userId":"u-ana","event":"Product Added","properties":{"cart_id":"c-ana","product_id":"shoe-42","price":89.9}}`))
	// Cy is a VIP too, without email consent: her reminder is suppressed.
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/identify", `{"userId":"u-cy","traits":{"email":"cy@example.com","vip":true,"consent":{"email":false}}}`))
	mustOK(t, r.send(t, "app_dev_write_key", "/v1/track", `{"userId":"u-cy","event":"Product Added","properties":{"cart_id":"c-cy"}}`))
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/identify", `{"userId":"u-bo","traits":{"email":"bo@example.com","first_name":"Bo"}}`))
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/track", `{"userId":"u-bo","event":"Order Completed","properties":{"order_id":"o-1","revenue":120,"channel":"web"}}`))

	ctx := newBrowser(t, chromium)
	// A bound on a stuck browser, not an assertion on speed.
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelT()

	base := r.base + "/console"
	start := time.Now()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		t.Logf("%6.2fs %s", time.Since(start).Seconds(), what)
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// submit clicks a button whose form loads another page, and waits for
	// that page: an element also on the page before would match too early.
	submit := func(what, sel string) {
		t.Helper()
		t.Logf("%6.2fs %s", time.Since(start).Seconds(), what)
		if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	html := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatalf("page HTML: %v", err)
		}
		return s
	}
	shots := os.Getenv("CARTERA_CONSOLE_SCREENSHOTS") == "1"
	shot := func(name string) {
		t.Helper()
		if !shots {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console", name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	login := func(user, password string, role console.Role) {
		t.Helper()
		do("open the login page", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.ID("user")))
		if role == console.RoleAdmin {
			shot("login")
		}
		do("log in as "+user,
			chromedp.SendKeys(chromedp.ID("user"), user), chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("accepted-total")))
		if got, want := text("#who"), fmt.Sprintf("%s (%s)", user, role); got != want {
			t.Fatalf("logged in as %q, want %q", got, want)
		}
	}
	logout := func() {
		t.Helper()
		do("log out", chromedp.Click(chromedp.CSS("form.who button")), chromedp.WaitVisible(chromedp.ID("user")))
	}
	search := func(q string) {
		t.Helper()
		do("search "+q, chromedp.Navigate(base+"/people"), chromedp.WaitVisible(chromedp.ID("q")),
			chromedp.SendKeys(chromedp.ID("q"), q), chromedp.Click(chromedp.ID("search")), chromedp.WaitVisible(chromedp.ID("profile-id")))
	}

	// The admin finds Ana by email and sees her in full.
	login(console.DevUser, console.DevPassword, console.RoleAdmin)
	shot("overview")
	search("email:Ana@Example.com")
	if ids := text("#identities"); !strings.Contains(ids, "ana@example.com") || !strings.Contains(ids, "+34600111221") {
		t.Errorf("admin's identities table: %q", ids)
	}
	if j := text("#journeys"); !strings.Contains(j, "cart_abandonment") {
		t.Errorf("Ana's journeys: %q, want cart_abandonment", j)
	}
	if tl := text("#timeline"); !strings.Contains(tl, "Product Added") || !strings.Contains(tl, "Product Viewed") {
		t.Errorf("Ana's timeline: %q", tl)
	}
	if c := strings.Join(strings.Fields(text("#consent")), " "); !strings.Contains(c, "email yes") || !strings.Contains(c, "sms no") {
		t.Errorf("Ana's consent table: %q, want email yes and sms no", c)
	}
	// Her timeline says why: the branch's condition, then the reminder
	// with the policies it passed (or, in quiet hours, the delay).
	if br := text(`#timeline tr[data-action="branch"][data-step="priority"] td.why`); !strings.Contains(br, `in_audience("priority_recovery") → reminder`) {
		t.Errorf("Ana's branch says %q", br)
	}
	switch why := text(`#timeline tr[data-step="reminder"].act td.why`); {
	case strings.Contains(why, "Consent: email granted") && strings.Contains(why, "Quiet hours:") && strings.Contains(why, "is outside"):
	case strings.HasPrefix(why, "Quiet hours: 21:00-09:00"):
	default:
		t.Errorf("Ana's reminder says %q, want the policies it passed or the quiet hours that delayed it", why)
	}
	shot("person")
	person, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	search("email:cy@example.com")
	if why := text(`#timeline tr[data-action="suppressed"][data-step="reminder"] td.why`); !strings.Contains(why, "Consent: no email consent") {
		t.Errorf("Cy's suppressed reminder says %q", why)
	}
	logout()

	// The viewer opens the same page and sees no address.
	login("vic", viewerPassword, console.RoleViewer)
	search("email:ana@example.com")
	viewerPage := html()
	if m := unmaskedEmail.FindAllString(viewerPage, -1); len(m) > 0 {
		t.Errorf("the viewer sees email addresses %q", m)
	}
	if strings.Contains(viewerPage, "600111221") || strings.Contains(viewerPage, "4000") || !strings.Contains(viewerPage, "a***@example.com") {
		t.Errorf("the viewer's page is not masked as it should be")
	}
	shot("person-viewer")
	logout()

	// The marketer: CSRF, journey counts moving, reload.
	login("mara", marketerPassword, console.RoleMarketer)
	do("open the journey", chromedp.Navigate(base+"/journeys/cart_abandonment"), chromedp.WaitVisible(chromedp.ID("steps")))
	post := func(body string) int {
		t.Helper()
		st, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/console/journeys/reload", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: `+strconv.Quote(body)+`, redirect: "manual"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := post("back=cart_abandonment"); st != 403 {
		t.Errorf("a form POST without its CSRF token: %d, want 403", st)
	}
	token, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("input[name=csrf]").value`))
	if err != nil {
		t.Fatal(err)
	}
	if st := post("csrf=" + token); st != 0 && st != 303 { // manual redirects read as 0 (opaque)
		t.Errorf("the same POST with the token: %d, want a redirect", st)
	}
	entered := func() int {
		t.Helper()
		n, err := strconv.Atoi(text("#entered"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := entered()
	for i := range 2 {
		mustOK(t, r.send(t, "app_dev_write_key", "/v1/track", fmt.Sprintf(`{"anonymousId":"anon-%d","event":"Product Added","properties":{"cart_id":"c-%d"}}`, i, i)))
	}
	do("reload the page", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("steps")))
	if after := entered(); after != before+2 {
		t.Errorf("entered %d after two carts, want %d", after, before+2)
	}
	// Both carts are from shoppers outside priority_recovery: they reach
	// the example's reminder_timing split (whichever arm each then takes).
	if n, _ := strconv.Atoi(text(`tr[data-step="timing"] td.entered`)); n < 2 {
		t.Errorf("the split step shows %d entered after two carts, want at least 2", n)
	}
	// The graph: a box per step, arrows counted (Ana and Cy took the
	// priority case), suppressions by reason below.
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#graph g.node[data-step]").length`)); err != nil || n < 9 {
		t.Errorf("the graph has %d boxes (%v), want one per step and the end", n, err)
	}
	label, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#graph text.elabel[data-from="priority"][data-to="reminder"]').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if l := label; !strings.HasSuffix(l, "· 2") {
		t.Errorf("the priority → reminder arrow says %q, want 2 people", l)
	}
	// Cy's, and each anonymous cart's the split sent to the reminder.
	if s := text(`tr[data-step="reminder"] td.suppressed`); !regexp.MustCompile(`^([123])\s+Consent: no email consent: ([123])$`).MatchString(s) {
		t.Errorf("the reminder's suppressions: %q", s)
	}
	shot("journey")
	do("last hour", chromedp.Click(chromedp.ID("range-1h")), chromedp.WaitVisible(chromedp.CSS("#range-1h.on")))
	if n, _ := strconv.Atoi(text("#range-entered")); n < 4 {
		t.Errorf("entered in the last hour: %d, want the 4 carts", n)
	}
	do("a range long ago", chromedp.Navigate(base+"/journeys/cart_abandonment?from=2020-01-01&to=2020-01-02"), chromedp.WaitVisible(chromedp.ID("graph")))
	if n := text("#range-entered"); n != "0" || entered() < 4 {
		t.Errorf("entered in 2020: %s (and %d in all), want 0", n, entered())
	}
	do("back to the journey", chromedp.Navigate(base+"/journeys/cart_abandonment"), chromedp.WaitVisible(chromedp.ID("graph")))
	oldVersion := text("#version")

	// A changed file: the reload page shows the line diff of what a
	// reload would change, the reload then what it changed and the new
	// version.
	jf := filepath.Join(r.dir, "journeys", "cart_abandonment.yaml")
	src, err := os.ReadFile(jf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jf, []byte(strings.Replace(string(src), "name: Cart abandonment recovery", "name: Cart recovery (edited)", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	const cartFile = `section.file-change[data-file="journeys/cart_abandonment.yaml"]`
	diffLines := func(in, class string) []string {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('`+in+` `+cartFile+` tr.`+class+` td.code')).map(td => td.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	submit("validate", "#validate")
	if st := text(`#pending ` + cartFile + ` h3`); !strings.Contains(st, "changed") || !strings.Contains(st, "+1") || !strings.Contains(st, "−1") {
		t.Errorf("the pending change is headed %q", st)
	}
	if del, ins := diffLines("#pending", "del"), diffLines("#pending", "ins"); !slices.Equal(del, []string{"-name: Cart abandonment recovery"}) || !slices.Equal(ins, []string{"+name: Cart recovery (edited)"}) {
		t.Errorf("before the reload, the diff removes %q and adds %q", del, ins)
	}
	if ctxLines := diffLines("#pending", "ctx"); !slices.Contains(ctxLines, " id: cart_abandonment") {
		t.Errorf("the diff's context lines: %q", ctxLines)
	}
	shot("reload")
	submit("reload journeys", "#reload")
	if flash := text("#flash"); !strings.Contains(flash, "cart_abandonment: version "+oldVersion+" → ") {
		t.Errorf("after the reload: flash %q (was version %s)", flash, oldVersion)
	}
	if del, ins := diffLines("#reloaded", "del"), diffLines("#reloaded", "ins"); !slices.Equal(del, []string{"-name: Cart abandonment recovery"}) || !slices.Equal(ins, []string{"+name: Cart recovery (edited)"}) {
		t.Errorf("after the reload, the diff removes %q and adds %q", del, ins)
	}
	text("#unchanged") // nothing left to reload
	do("the journey after the reload", chromedp.Navigate(base+"/journeys/cart_abandonment"), chromedp.WaitVisible(chromedp.ID("graph")))
	if v := text("#version"); v == oldVersion {
		t.Errorf("the journey still has version %s", v)
	}
	// A broken file: the page says a reload would be refused, and one
	// posted all the same is, with the file's errors.
	bad := filepath.Join(r.dir, "journeys", "broken.yaml")
	if err := os.WriteFile(bad, []byte("id: broken\ntrigger:\n  event: Product Added\nsteps:\n  - id: a\n    wait: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	do("validate a broken file", chromedp.Navigate(base+"/journeys/reload"), chromedp.WaitVisible(chromedp.ID("dry-errors")))
	if errs := text("#dry-errors"); !strings.Contains(errs, "broken.yaml:6:") {
		t.Errorf("validation errors %q, want broken.yaml:6:...", errs)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#reload").length`)); err != nil || n != 0 {
		t.Errorf("a reload is offered for broken files (%d, %v)", n, err)
	}
	token, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("input[name=csrf]").value`))
	if err != nil {
		t.Fatal(err)
	}
	if st := post("csrf=" + token); st != 0 && st != 303 {
		t.Errorf("reload of a broken file: %d, want a redirect", st)
	}
	do("after the refused reload", chromedp.Navigate(base+"/journeys/reload"), chromedp.WaitVisible(chromedp.ID("errors")))
	if errs := text("#errors"); !strings.Contains(errs, "broken.yaml:6:") {
		t.Errorf("reload errors %q, want broken.yaml:6:...", errs)
	}
	if flash := text("#flash"); !strings.Contains(flash, "refused") {
		t.Errorf("flash %q, want the refusal", flash)
	}
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	// A backtest of the cart journey over the day's events, from its file.
	do("open the backtest", chromedp.Navigate(base+"/backtest?journey=cart_abandonment"), chromedp.WaitVisible(chromedp.ID("backtest-file")))
	submit("run the backtest", "#backtest-run")
	if n, err := strconv.Atoi(text("#bt-events")); err != nil || n == 0 {
		t.Errorf("backtest replayed %q events, want some", text("#bt-events"))
	}
	if n, err := strconv.Atoi(text("#bt-entered")); err != nil || n == 0 {
		t.Errorf("backtest entered %q, want the carts of the day", text("#bt-entered"))
	}
	shot("backtest")
	do("open the journeys", chromedp.Navigate(base+"/journeys"), chromedp.WaitVisible(chromedp.ID("journey-list")))
	shot("journeys")
	do("audiences", chromedp.Navigate(base+"/audiences"), chromedp.WaitVisible(chromedp.ID("audience-list")))
	shot("audiences")
	logout()

	// The admin sees what the others did.
	login(console.DevUser, console.DevPassword, console.RoleAdmin)
	do("open the audit log", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	audit := text("#audit")
	for _, want := range []string{"mara", "vic", "reload", "login", "logout"} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit log lacks %q:\n%s", want, audit)
		}
	}
	shot("audit")
	do("open the users", chromedp.Navigate(base+"/users"), chromedp.WaitVisible(chromedp.ID("users")))
	if users := text("#users"); !strings.Contains(users, "mara") || !strings.Contains(users, "marketer") || !strings.Contains(users, console.DevUser) {
		t.Errorf("the users page lacks mara (marketer) or %s:\n%s", console.DevUser, users)
	}
	shot("users")
	do("open the outbox", chromedp.Navigate(base+"/outbox"), chromedp.WaitVisible(chromedp.ID("dead")))
	shot("outbox")
	do("back to Ana", chromedp.Navigate(person), chromedp.WaitVisible(chromedp.ID("profile-id")))

	// The Wallet page: Ana's pass, her phone following it, a device's
	// log line.
	issued := r.admin(t, "POST", "/v1/profiles/user_id:u-ana/passes")
	if issued.status != 201 {
		t.Fatalf("issue Ana's pass: %d %s", issued.status, issued.raw)
	}
	serial, tier := issued.body["serial"].(string), issued.body["tier"].(string)
	u, err := url.Parse(issued.body["apple_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	resp, pkpass := get(t, r.base+u.RequestURI(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download Ana's pass: %d", resp.StatusCode)
	}
	// The token the phone would read from pass.json (the signature is
	// the wallet tests' concern: openssl checks it at the wall clock,
	// and serve's dev chain is made at the test clock).
	passToken, err := passAuthToken(pkpass)
	if err != nil {
		t.Fatal(err)
	}
	if rep := r.do(t, "POST", "/wallet/v1/devices/d1/registrations/"+exPassTypeID+"/"+serial, map[string]string{"Authorization": "ApplePass " + passToken, "Content-Type": "application/json"}, []byte(`{"pushToken":"aa11"}`)); rep.status != 201 {
		t.Fatalf("register a device: %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/wallet/v1/log", map[string]string{"Content-Type": "application/json"}, []byte(`{"logs":["Web service error for pass.example.cartera.loyalty: test line 42"]}`)); rep.status != 200 {
		t.Fatalf("device log: %d %s", rep.status, rep.raw)
	}
	// Ana's page draws her pass as the phone shows it, with the device
	// that follows it, by hash.
	do("Ana's pass", chromedp.Navigate(person), chromedp.WaitVisible(chromedp.CSS(`svg.pass-card[data-serial="`+serial+`"]`)))
	sel, _ := json.Marshal(`svg.pass-card[data-serial="` + serial + `"] text.value.primary`)
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(`+string(sel)+`).textContent`)); err != nil || !strings.EqualFold(v, tier) {
		t.Errorf("Ana's pass card shows %q (%v) as its primary field, want her tier %s", v, err, tier)
	}
	if bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('svg.pass-card rect.card-bg').getAttribute('fill')`)); err != nil || !strings.HasPrefix(bg, "rgb(") {
		t.Errorf("Ana's pass card background %q (%v), want the tier's rgb() colour", bg, err)
	}
	// The gold tier's strip and the template's logo are drawn on it.
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll('svg.pass-card image')).filter(i => i.getBBox().width > 0 && i.getAttribute('href').startsWith('data:image/png;base64,')).length`)); err != nil || n != 2 {
		t.Errorf("Ana's pass card draws %d images (%v), want its strip and logo", n, err)
	}
	// Its QR code, as Chromium draws it, scans to her loyalty card.
	if got, err := scanScreenshot(ctx, `svg.pass-card[data-serial="`+serial+`"] svg.barcode-qr`); err != nil || got != "40001234" {
		t.Errorf("Ana's pass QR code scans to %q (%v), want her loyalty card 40001234", got, err)
	}
	d1 := sha256.Sum256([]byte("d1"))
	passBox := `#passes .pass[data-serial="` + serial + `"]`
	if devs := text(passBox + " table.pass-devices"); !strings.Contains(devs, hex.EncodeToString(d1[:8])) || strings.Contains(devs, "aa11") {
		t.Errorf("the devices of Ana's pass: %q, want d1's hash and no push token", devs)
	}
	if pushes := text(passBox + " table.pass-pushes"); !strings.Contains(pushes, "No update pushed yet.") {
		t.Errorf("the pushes of Ana's pass: %q", pushes)
	}
	shot("person-pass")
	do("wallet", chromedp.Navigate(base+"/wallet"), chromedp.WaitVisible(chromedp.ID("passes-by-tier")))
	if n, d := text("#passes-issued"), text("#devices"); n != "1" || d != "1" {
		t.Errorf("wallet page: %s passes issued, %s devices; want 1 and 1", n, d)
	}
	if live := text(`#passes-by-tier tr[data-template="loyalty"][data-tier="` + tier + `"] td.live`); live != "1" {
		t.Errorf("live %s passes of loyalty: %q, want 1", tier, live)
	}
	if l := text("#device-log"); !strings.Contains(l, "test line 42") {
		t.Errorf("device log: %q", l)
	}
	shot("wallet")
	// A minute on, the first sample (taken at start) is a minute old:
	// the rates are over that minute.
	if rep := r.do(t, "POST", "/v1/admin/clock", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, []byte(`{"advance":"1m"}`)); rep.status != 200 {
		t.Fatalf("advance the clock: %d %s", rep.status, rep.raw)
	}
	do("overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("by-source")))
	if src := text("#by-source"); !strings.Contains(src, "app") || !strings.Contains(src, "shop") {
		t.Errorf("events by source: %q", src)
	}
	// Every app event came after the first sample, at least a minute
	// ago: a rate above zero and at most the total over 60 s.
	rate, _ := strconv.ParseFloat(strings.TrimSuffix(text(`#by-source tr[data-source="app"] td.rate`), "/s"), 64)
	appTotal, _ := strconv.ParseFloat(text(`#by-source tr[data-source="app"] td:nth-child(2)`), 64)
	if rate <= 0 || appTotal < 3 || rate > appTotal/60+0.005 {
		t.Errorf("app's events/s over the last minute: %.2f for %v events, want above 0 and at most %.2f", rate, appTotal, appTotal/60)
	}
	if n, secs := text("#lag-events"), text("#lag-seconds"); !regexp.MustCompile(`^\d+$`).MatchString(n) || !regexp.MustCompile(`^\d+\.\d s$`).MatchString(secs) {
		t.Errorf("apply lag %q events, %q; want a count of events and seconds", n, secs)
	}
	if n, _ := strconv.Atoi(text(`#by-channel tr[data-channel="email"] td.total`)); n < 2 {
		t.Errorf("email actions: %d, want at least Ana's reminder and Cy's suppressed one", n)
	}
	// The charts count the events since the first sample, taken before
	// serve listened: the 9 sent above.
	for _, id := range []string{"chart-hour", "chart-day"} {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#`+id+` text.legend[data-series="accepted"]').getAttribute("data-total")`))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := strconv.Atoi(n); got < 9 {
			t.Errorf("%s counts %q events accepted, want at least 9", id, n)
		}
	}
	shot("overview")

	// A welcome mail the relay holds is in flight on the Outbox page.
	relay.SetDelay(time.Minute)
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/identify", `{"userId":"u-dee","traits":{"email":"dee@example.com","loyalty_card":"4000 9999","consent":{"email":true}}}`))
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/track", `{"userId":"u-dee","event":"Signed Up"}`))
	eventually(t, 15*time.Second, "Dee's welcome mail held at the relay", func() bool { return relay.Receiving() == 1 })
	do("outbox in flight", chromedp.Navigate(base+"/outbox"), chromedp.WaitVisible(chromedp.ID("inflight")))
	if fl := text("#inflight"); !strings.Contains(fl, "email") || !strings.Contains(fl, "welcome welcome_email") {
		t.Errorf("in flight: %q, want Dee's welcome email", fl)
	}
	shot("outbox")
	relay.SetDelay(0)

	// A day after her unopened reminder the cart journey adds Ana to
	// retargeting: the audience's page lists her, held by the journey.
	ana := retarget(t, r.server, "u-ana")
	login("mara", marketerPassword, console.RoleMarketer) // the day outlived the session
	do("audiences", chromedp.Navigate(base+"/audiences"), chromedp.WaitVisible(chromedp.ID("ad-audience-list")))
	if n := text(`#ad-audience-list tr[data-audience="retargeting"] td.size`); n != "1" {
		t.Errorf("retargeting's size on the audiences page: %q, want 1", n)
	}
	do("retargeting", chromedp.Click(chromedp.CSS(`#ad-audience-list a[href="/console/audiences/retargeting"]`)), chromedp.WaitVisible(chromedp.ID("members")))
	if held := text(`#members tr[data-profile="` + ana + `"] td.held-by`); held != "cart_abandonment (at hold)" {
		t.Errorf("Ana on retargeting's page is held by %q", held)
	}
	if added := text("#added-by"); added != "cart_abandonment/retarget" {
		t.Errorf("retargeting is added to by %q", added)
	}
	shot("audience-retargeting")
}

// scanScreenshot reads the QR code in a screenshot of the element sel.
func scanScreenshot(ctx context.Context, sel string) (string, error) {
	shot, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		return "", fmt.Errorf("screenshot %s: %w", sel, err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		return "", fmt.Errorf("decode the screenshot of %s: %w", sel, err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		return "", fmt.Errorf("scan %s: %w", sel, err)
	}
	return res.GetText(), nil
}

// TestConsoleClusterInBrowser: the console of a cluster node in headless
// Chromium: the admin logs in on node b, follows the nav to the Cluster
// page and sees both nodes and each of the 64 partitions held by one of
// them.
func TestConsoleClusterInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	a, b, _ := startExampleNodes(t, nil)
	waitUntil(t, "a and b share the 64 partitions", func() bool {
		ha, hb := partitionsHeld(t, a), partitionsHeld(t, b)
		return ha > 0 && hb > 0 && ha+hb == 64
	})
	ctx := newBrowser(t, chromium)
	// A bound on a stuck browser, not an assertion on speed.
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelT()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("log in on b", chromedp.Navigate(b.base+"/console/login"), chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), console.DevUser), chromedp.SendKeys(chromedp.ID("password"), console.DevPassword),
		chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("who")))
	do("open the Cluster page from the nav", chromedp.Click(chromedp.CSS(`nav a[href="/console/cluster"]`)), chromedp.WaitVisible(chromedp.ID("cluster-partitions")))
	holders, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#cluster-partitions td.holder")).map(e => e.textContent.trim()).join(",")`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(holders, ",")
	byNode := map[string]int{}
	for _, h := range got {
		byNode[h]++
	}
	if len(got) != 64 || byNode["a"]+byNode["b"] != 64 || byNode["a"] == 0 || byNode["b"] == 0 {
		t.Errorf("the Cluster page shows %d partitions, held %v; want 64 shared by a and b", len(got), byNode)
	}
	nodes, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("cluster-nodes")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nodes, "b (this node)") || !strings.Contains(nodes, "a") {
		t.Errorf("the nodes table: %q, want a, and b as this node", nodes)
	}
}
