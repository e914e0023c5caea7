package main

import (
	"encoding/csv"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/cmd/cartera/console"
)

// retarget lets the dev clock run until the person's cart reminder goes
// unopened for a day and the cart journey adds them to retargeting (a
// reminder held by quiet hours waits for the morning first); it returns
// their profile id.
func retarget(t *testing.T, s *server, user string) string {
	t.Helper()
	for range 8 {
		p := s.admin(t, "GET", "/v1/profiles/user_id:"+user)
		if p.status != 200 {
			t.Fatalf("profile of %s: %d %s", user, p.status, p.raw)
		}
		for _, j := range p.body["journeys"].([]any) {
			j := j.(map[string]any)
			if j["journey"] != "cart_abandonment" {
				continue
			}
			if aud, _ := j["audiences"].([]any); slices.Contains(aud, any("retargeting")) {
				return p.body["id"].(string)
			}
		}
		if r := s.do(t, "POST", "/v1/admin/clock", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, []byte(`{"advance":"13h"}`)); r.status != 200 {
			t.Fatalf("advance the clock: %d %s", r.status, r.raw)
		}
		now, err := time.Parse(time.RFC3339Nano, s.admin(t, "GET", "/v1/admin/clock").body["now"].(string))
		if err != nil {
			t.Fatal(err)
		}
		// The timers that came due have fired when no instance of the
		// person waits on one in the past.
		eventually(t, 10*time.Second, user+"'s due timers", func() bool {
			for _, j := range s.admin(t, "GET", "/v1/profiles/user_id:"+user).body["journeys"].([]any) {
				if w, ok := j.(map[string]any)["waiting_until"].(string); ok {
					if at, err := time.Parse(time.RFC3339Nano, w); err == nil && !at.After(now) {
						return false
					}
				}
			}
			return true
		})
	}
	t.Fatalf("%s never joined retargeting", user)
	return ""
}

// The retargeting audience, which the cart journey fills, has a page as a
// rules audience does: size, members with the journeys holding them,
// the steps that add and remove, the CSV export for marketers.
func TestConsoleAdAudience(t *testing.T) {
	r := startConsole(t, nil)
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/identify", `{"userId":"u-ana","traits":{"email":"ana@example.com","vip":true,"consent":{"email":true,"ads":true}}}`))
	mustOK(t, r.send(t, "app_dev_write_key", "/v1/track", `{"userId":"u-ana","event":"Product Added","properties":{"cart_id":"c-ana"}}`))
	ana := retarget(t, r.server, "u-ana")

	mara := r.user()
	mara.mustLogin(t, "mara", marketerPassword)
	_, list, _ := mara.get(t, "/console/audiences")
	if !strings.Contains(list, `<tr data-audience="retargeting"><td><a href="/console/audiences/retargeting">retargeting</a>`) || !strings.Contains(list, `<td class="size">1</td>`) {
		t.Errorf("the audiences page does not list retargeting with 1 member:\n%s", list)
	}
	st, page, _ := mara.get(t, "/console/audiences/retargeting")
	if st != 200 {
		t.Fatalf("retargeting's page: %d", st)
	}
	for _, want := range []string{
		`<strong id="size">1</strong>`,
		`<tr data-profile="` + ana + `">`,
		`<td class="held-by">cart_abandonment (at hold)</td>`,
		`>cart_abandonment/retarget</a>`, `>cart_abandonment/leave</a>`,
		`href="/console/audiences/retargeting/export.csv"`,
		`id="chart-size"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("retargeting's page lacks %q", want)
		}
	}
	st, body, h := mara.get(t, "/console/audiences/retargeting/export.csv")
	if st != 200 || h.Get("Content-Disposition") != `attachment; filename="audience-retargeting.csv"` {
		t.Fatalf("CSV export: %d %q", st, h.Get("Content-Disposition"))
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 2 || !slices.Equal(rows[0], []string{"profile_id", "held_by"}) || !slices.Equal(rows[1], []string{ana, "cart_abandonment"}) {
		t.Errorf("CSV export: %q (%v)", rows, err)
	}

	viewer := r.user()
	viewer.mustLogin(t, "vic", viewerPassword)
	st, page, _ = viewer.get(t, "/console/audiences/retargeting")
	if st != 200 || !strings.Contains(page, `<tr data-profile="`+ana+`">`) || strings.Contains(page, "export.csv") || strings.Contains(page, "ana@example.com") {
		t.Errorf("viewer's retargeting page: %d; want Ana by profile id, no export, no address", st)
	}
	if st, _, _ := viewer.get(t, "/console/audiences/retargeting/export.csv"); st != http.StatusForbidden {
		t.Errorf("viewer's CSV export: %d, want 403", st)
	}
	if st, _, _ := mara.get(t, "/console/audiences/nope"); st != http.StatusNotFound {
		t.Errorf("an unknown audience: %d, want 404", st)
	}
	admin := r.user()
	admin.mustLogin(t, console.DevUser, console.DevPassword)
	if _, audit, _ := admin.get(t, "/console/audit"); !strings.Contains(audit, "audience retargeting") {
		t.Error("the audit log lacks the export of retargeting")
	}
}

// TestConsoleAdAudienceSync: with retargeting mirrored on Meta and Google
// (stand-ins), Bea's abandoned cart adds her; the audience's page then
// shows her as a member and each platform's delivery and last sync.
func TestConsoleAdAudienceSync(t *testing.T) {
	t.Parallel()
	rig := newDeliveryRig(t, "")
	withMarketer(t, rig.config)
	s, _ := rig.serve(t, nil)
	mustOK(t, s.send(t, dlWebKey, "/v1/identify", `{"userId":"u-bea","traits":{"email":"bea@example.com","consent":{"ads":true}}}`))
	mustOK(t, s.send(t, dlWebKey, "/v1/track", `{"userId":"u-bea","event":"Product Added","properties":{"cart_id":"c-bea"}}`))
	eventually(t, 15*time.Second, "Bea's add to retargeting on Meta", func() bool {
		return len(metaRows(t, rig.meta.Hits(), "POST", dlRetargetPath)) == 1
	})
	bea := s.profile(t, "user_id:u-bea")["id"].(string)
	mara := (&consoleRig{server: s}).user()
	mara.mustLogin(t, "mara", marketerPassword)
	row := func(page, dest string) string {
		i := strings.Index(page, `<tr data-destination="`+dest+`">`)
		if i < 0 {
			return ""
		}
		return page[i : i+strings.Index(page[i:], "</tr>")]
	}
	var page string
	eventually(t, 10*time.Second, "both platforms' deliveries on retargeting's page", func() bool {
		_, page, _ = mara.get(t, "/console/audiences/retargeting")
		return strings.Contains(row(page, "meta:retargeting"), `</td><td>1</td><td>0</td><td>0</td><td>0</td>`) &&
			strings.Contains(row(page, "google:retargeting"), `</td><td>1</td><td>0</td><td>0</td><td>0</td>`)
	})
	for _, d := range []string{"meta:retargeting", "google:retargeting"} {
		if r := row(page, d); strings.Contains(r, "not since") || !strings.Contains(r, `<td class="last-sync">20`) {
			t.Errorf("%s has no last sync: %s", d, r)
		}
	}
	if !strings.Contains(page, `<tr data-profile="`+bea+`">`) || !strings.Contains(page, `<strong id="size">1</strong>`) {
		t.Error("retargeting's page does not list Bea")
	}
}
