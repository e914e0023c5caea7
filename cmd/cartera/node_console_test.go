package main

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"cartera/cmd/cartera/console"
	"cartera/internal/smtptest"
)

// The console on cluster nodes (step 5 of docs/cluster.md's path): a
// person's page, found by email through either node, shows what the node
// holding them keeps (identities, the cart journey, the events, the pass
// and its device); the journeys, audiences, outbox and wallet pages add
// up every partition's; a message is dropped through the outbox page by
// the seq it shows; and an erasure through a node's console reaches the
// holder. A reload through a node's console reloads every node.
func TestServeClusterNodesConsole(t *testing.T) {
	// Mail to bounce@ is refused for good: a dead letter to drop.
	relay := smtptest.Start(t, dlSMTPUser, dlSMTPPass)
	a, b, _ := startExampleNodes(t, map[string]string{"CARTERA_SMTP_URL": relay.URL, "CARTERA_SMTP_CA_FILE": relay.CAFile,
		// Noon: the reminders go at once, outside quiet hours.
		"CARTERA_DEV_CLOCK": "2026-12-07T12:00:00Z"})
	people := []string{"ana", "ben", "cai", "bounce", "eli", "fay"}
	for _, u := range people {
		mustOK(t, a.send(t, "web_dev_write_key", "/v1/identify", fmt.Sprintf(`{"userId":"con-%s","traits":{"email":"%s@example.com","loyalty_card":"4000-%04d","vip":true,"consent":{"email":true}}}`, u, u, len(u)*97+int(u[0]))))
		mustOK(t, b.send(t, "app_dev_write_key", "/v1/track", fmt.Sprintf(`{"userId":"con-%s","event":"Product Added","properties":{"cart_id":"cart-%s","email":"%s@example.com"}}`, u, u, u)))
	}
	var serial string
	waitUntil(t, "ana's pass issued through b", func() bool {
		r := b.admin(t, "POST", "/v1/profiles/user_id:con-ana/passes")
		serial, _ = r.body["serial"].(string)
		return (r.status == 200 || r.status == 201) && serial != ""
	})
	waitUntil(t, "everyone in the cart journey", func() bool {
		r := a.admin(t, "GET", "/v1/journeys/cart_abandonment")
		j, _ := r.body["journey"].(map[string]any)
		return r.status == 200 && j != nil && j["entered"] == float64(len(people))
	})

	for _, s := range []*server{a, b} {
		u := newConsoleUser(s.base, "")
		u.mustLogin(t, console.DevUser, console.DevPassword)
		st, _, loc := settled(t, u, "/console/people?q=email:ANA@example.com")
		if st != http.StatusSeeOther || !strings.HasPrefix(loc.Get("Location"), "/console/people/profile_id:") {
			t.Fatalf("search by email through %s: %d to %q, want 303 to the person", s.base, st, loc.Get("Location"))
		}
		st, page, _ := settled(t, u, loc.Get("Location"))
		for _, want := range []string{"ana@example.com", "con-ana", "cart_abandonment", "Product Added", serial} {
			if st != 200 || !strings.Contains(page, want) {
				t.Errorf("ana's page through %s: %d, lacks %q", s.base, st, want)
			}
		}
		if st, page, _ := settled(t, u, "/console/people?q=email:con"); st != 200 {
			t.Errorf("a prefix search through %s: %d %.300s", s.base, st, page)
		}
		if st, page, _ := settled(t, u, "/console/journeys/cart_abandonment"); st != 200 || !strings.Contains(page, "cart_reminder") {
			t.Errorf("the cart journey's page through %s: %d %.500s", s.base, st, page)
		}
		st, page, _ = settled(t, u, "/console/journeys")
		if row := regexp.MustCompile(`(?s)cart_abandonment.*?</tr>`).FindString(page); st != 200 || !strings.Contains(row, ">6<") {
			t.Errorf("the journeys page through %s: %d, cart_abandonment's row %q does not count 6 entered", s.base, st, row)
		}
		// Everyone is a VIP, in whichever partition: the sizes add up.
		st, page, _ = settled(t, u, "/console/audiences")
		if row := regexp.MustCompile(`(?s)>vip</a>.*?</tr>`).FindString(page); st != 200 || !strings.Contains(row, "<td>6</td>") {
			t.Errorf("the audiences page through %s: %d, vip's row %q does not count 6", s.base, st, row)
		}
		if st, page, _ := settled(t, u, "/console/outbox"); st != 200 {
			t.Errorf("the outbox page through %s: %d %.300s", s.base, st, page)
		}
		if st, page, _ := settled(t, u, "/console/wallet"); st != 200 || !strings.Contains(page, `id="passes-issued">1<`) {
			t.Errorf("the wallet page through %s: %d, not counting ana's one pass: %.300s", s.base, st, page)
		}
		if st, page, _ := settled(t, u, "/console/"); st != 200 || !strings.Contains(page, `href="/console/cluster"`) {
			t.Errorf("the overview through %s: %d, or no link to the Cluster page: %.300s", s.base, st, page)
		}
		// The Cluster page: both nodes, every partition held by one of
		// them, their lags told.
		holder := regexp.MustCompile(`<tr data-partition="(\d+)"><td>\d+</td><td class="holder">([^<]*)</td>`)
		waitUntil(t, "the Cluster page through "+s.base+" shows every partition held", func() bool {
			st, page, _ := settled(t, u, "/console/cluster")
			rows := holder.FindAllStringSubmatch(page, -1)
			if st != 200 || len(rows) != 64 || !strings.Contains(page, `<tr data-node="a">`) || !strings.Contains(page, `<tr data-node="b">`) {
				return false
			}
			for _, r := range rows {
				if r[2] != "a" && r[2] != "b" {
					return false
				}
			}
			return !strings.Contains(page, "not told")
		})
		token := u.csrf(t, "/console/journeys/reload")
		if st, _, _ := u.post(t, "/console/journeys/reload", url.Values{"csrf": {token}}); st != http.StatusSeeOther {
			t.Errorf("a reload through %s's console: %d, want 303 to its result", s.base, st)
		}
		if st, page, _ := settled(t, u, "/console/journeys/reload"); st != 200 || strings.Contains(page, "Reload refused") || !strings.Contains(page, "reloaded") {
			t.Errorf("a reload's result through %s's console: %d, not reloaded: %.1500s", s.base, st, page)
		}
	}

	// The bounce's dead letter, dropped through b's console by the seq
	// its page shows (its partition in the top bits).
	u := newConsoleUser(b.base, "")
	u.mustLogin(t, console.DevUser, console.DevPassword)

	// A backtest of the cart journey through b's console runs on every
	// partition: the six shoppers enter it.
	st, page, _ := settled(t, u, "/console/backtest?journey=cart_abandonment")
	if st != 200 || !strings.Contains(page, "id: cart_abandonment") {
		t.Fatalf("the backtest form through b: %d %.500s", st, page)
	}
	file := html.UnescapeString(regexp.MustCompile(`(?s)<textarea[^>]*>(.*?)</textarea>`).FindStringSubmatch(page)[1])
	token := csrfField.FindStringSubmatch(page)[1]
	// (503 while a partition moves between nodes: tried again, as a
	// marketer would.)
	waitUntil(t, "a backtest through b's console not 503", func() bool {
		st, page, _ = u.post(t, "/console/backtest", url.Values{"csrf": {token}, "name": {"cart_abandonment.yaml"}, "since": {"1d"}, "file": {file}})
		if st == http.StatusServiceUnavailable {
			t.Logf("a backtest through b's console: 503 %.300s", page)
		}
		return st != http.StatusServiceUnavailable
	})
	for _, want := range []string{`<td id="bt-entered">6</td>`, `<td id="bt-people">6</td>`} {
		if st != 200 || !strings.Contains(page, want) {
			t.Errorf("a backtest through b's console: %d, lacks %s", st, want)
		}
	}
	drop := regexp.MustCompile(`action="(/console/outbox/(\d+)/drop)"`)
	var m []string
	waitUntil(t, "the bounce's dead letter on the outbox page", func() bool {
		_, page, _ := u.get(t, "/console/outbox")
		m = drop.FindStringSubmatch(page)
		return m != nil && strings.Contains(page, "no such user")
	})
	if seq, _ := strconv.ParseUint(m[2], 10, 64); seq>>48 >= 64 || seq&(1<<48-1) > 100 {
		t.Errorf("dead letter %s: not a partition of 64 and one of its first messages", m[2])
	}
	token = u.csrf(t, "/console/outbox")
	if st, page, _ := u.post(t, m[1], url.Values{"csrf": {token}}); st != http.StatusSeeOther {
		t.Fatalf("drop %s through b's console: %d %.500s", m[2], st, page)
	}
	if _, page, _ := settled(t, u, "/console/outbox"); strings.Contains(page, m[1]) {
		t.Errorf("dead letter %s still listed after its drop", m[2])
	}
	if r := a.admin(t, "GET", "/v1/outbox?state=dead"); r.status != 200 || strings.Contains(r.raw, "no such user") {
		t.Errorf("dead letters through a after the drop: %d %.500s", r.status, r.raw)
	}

	// An erasure through a's console, whichever node holds ben.
	u = newConsoleUser(a.base, "")
	u.mustLogin(t, console.DevUser, console.DevPassword)
	st, _, loc := settled(t, u, "/console/people?q=user_id:con-ben")
	if st != http.StatusSeeOther {
		t.Fatalf("ben by user id: %d", st)
	}
	person := loc.Get("Location")
	token = u.csrf(t, person)
	if st, page, _ := u.post(t, person+"/erase", url.Values{"csrf": {token}, "confirm": {"yes"}}); st != http.StatusSeeOther {
		t.Fatalf("erase ben through a's console: %d %.500s", st, page)
	}
	for _, s := range []*server{a, b} {
		if r := s.admin(t, "GET", "/v1/profiles/user_id:con-ben"); r.status != 404 {
			t.Errorf("ben after the erasure, through %s: %d %.200s, want 404", s.base, r.status, r.raw)
		}
	}
}

// settled gets a console page through a node, again while it answers 503
// (a partition moving between nodes as they balance).
func settled(t *testing.T, u *consoleUser, path string) (int, string, http.Header) {
	t.Helper()
	var (
		st   int
		page string
		h    http.Header
	)
	waitUntil(t, path+" not 503", func() bool {
		st, page, h = u.get(t, path)
		return st != http.StatusServiceUnavailable
	})
	return st, page, h
}
