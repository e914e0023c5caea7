package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

// The Users page lists the config's accounts with their sessions and last
// logins, for admins only; "Sign out everywhere" ends one account's
// sessions (its next request must log in again), needs the CSRF token, and
// is audited.
func TestUsersPage(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	cfg := DefaultConfig()
	pw := hash(t, "a-long-password", MinPasswordCost)
	cfg.Users = []User{{"u-admin", RoleAdmin, pw}, {"u-marketer", RoleMarketer, pw}, {"u-viewer", RoleViewer, pw}, {"zoe", RoleViewer, pw}}
	r := newRigConfig(t, cfg, &pagedAudiences{}, clock)
	r.c.record("u-marketer", "login", "", "", RoleMarketer)
	clock.Advance(time.Hour)
	r.c.record("u-marketer", "login", "", "", RoleMarketer)
	r.c.record("u-admin", "reload", "", "", RoleAdmin) // not a login
	second := r.c.sessions.create("u-marketer", RoleMarketer, clock.Now())

	for _, role := range []Role{RoleViewer, RoleMarketer} {
		if resp, _ := r.get(t, role, "/console/users"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", role, resp.StatusCode)
		}
	}
	resp, page := r.get(t, RoleAdmin, "/console/users")
	if resp.StatusCode != 200 {
		t.Fatalf("admin: %d %s", resp.StatusCode, page)
	}
	row := func(page, name string) string {
		i := strings.Index(page, `data-user="`+name+`"`)
		if i < 0 {
			t.Fatalf("no row for %s", name)
		}
		j := strings.Index(page[i:], "</tr>")
		return page[i : i+j]
	}
	m := row(page, "u-marketer")
	for _, want := range []string{"<td>marketer</td>", `<td class="sessions">2</td>`, "2026-12-06 11:00:00Z", "Sign out everywhere"} {
		if !strings.Contains(m, want) {
			t.Errorf("u-marketer's row lacks %s: %s", want, m)
		}
	}
	if z := row(page, "zoe"); !strings.Contains(z, `<td class="sessions">0</td>`) || !strings.Contains(z, "none recorded") || strings.Contains(z, "Sign out") {
		t.Errorf("zoe's row: %s", z)
	}
	if a := row(page, "u-admin"); strings.Contains(a, "2026-12-06") {
		t.Errorf("u-admin's reload counted as a login: %s", a)
	}

	signOut := func(csrf string) int {
		req := httptest.NewRequest("POST", "/console/users/u-marketer/signout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: cookieSession, Value: r.cookies[RoleAdmin]})
		resp, err := r.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := signOut(""); code != http.StatusForbidden || r.c.sessions.perUser(clock.Now())["u-marketer"] != 2 {
		t.Fatalf("sign out without the CSRF token: %d, sessions left %d", code, r.c.sessions.perUser(clock.Now())["u-marketer"])
	}
	admin := r.c.sessions.get(r.cookies[RoleAdmin], clock.Now())
	if code := signOut(admin.csrf); code != http.StatusSeeOther {
		t.Fatalf("sign out: %d, want 303", code)
	}
	if n := r.c.sessions.perUser(clock.Now())["u-marketer"]; n != 0 || r.c.sessions.get(second.id, clock.Now()) != nil {
		t.Errorf("u-marketer has %d sessions after the sign out", n)
	}
	if resp, _ := r.get(t, RoleMarketer, "/console/"); resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		t.Errorf("the signed-out marketer's next request: %d, want a redirect to log in", resp.StatusCode)
	}
	if n := r.c.sessions.perUser(clock.Now())["u-viewer"]; n != 1 {
		t.Errorf("the viewer lost their session too (%d left)", n)
	}
	list, err := r.c.audit.Recent(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 || list[0].Action != "sign_out_user" || list[0].Target != "u-marketer" || list[0].User != "u-admin" {
		t.Errorf("the newest audit entry is %+v, want u-admin's sign_out_user of u-marketer", list[0])
	}
}
