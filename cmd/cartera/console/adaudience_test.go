package console

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/journeys"
)

// fakeAds holds one ad audience, retargeting, in memory.
type fakeAds struct{ members []journeys.AdMember }

func (f *fakeAds) AdAudiences() ([]AdAudience, error) {
	return []AdAudience{{Name: "retargeting", Description: "Win back", Size: int64(len(f.members)),
		AddedBy: []string{"cart/retarget"}, RemovedBy: []string{"cart/leave"}}}, nil
}

func (f *fakeAds) AdMembers(audience, after string, limit int) ([]journeys.AdMember, string, error) {
	if audience != "retargeting" {
		return nil, "", fmt.Errorf("%w %q", journeys.ErrUnknownAdAudience, audience)
	}
	i, found := slices.BinarySearchFunc(f.members, after, func(m journeys.AdMember, id string) int { return strings.Compare(m.ProfileID, id) })
	if found {
		i++
	}
	end := min(i+limit, len(f.members))
	next := ""
	if end < len(f.members) {
		next = f.members[end-1].ProfileID
	}
	return f.members[i:end], next, nil
}

// An ad audience's page pages its members with who holds them; its CSV
// export lists them all, for marketers only.
func TestAdAudiencePage(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	ads := &fakeAds{}
	for i := range membersPage + 3 {
		m := journeys.AdMember{ProfileID: fmt.Sprintf("p%03d", i), Holds: []journeys.AdHold{{Journey: "cart", Step: "hold"}}}
		if i == 0 {
			m.Holds = append(m.Holds, journeys.AdHold{Journey: "winback", Step: "wait"}, journeys.AdHold{})
		}
		ads.members = append(ads.members, m)
	}
	r := newRig(t, &pagedAudiences{}, clock, func(o *Options) { o.AdAudiences = ads })
	_, list := r.get(t, RoleViewer, "/console/audiences")
	if !strings.Contains(list, `<tr data-audience="retargeting">`) || !strings.Contains(list, `<td class="size">53</td>`) {
		t.Error("the audiences page does not list retargeting with its size")
	}
	resp, page := r.get(t, RoleViewer, "/console/audiences/retargeting")
	if resp.StatusCode != 200 {
		t.Fatalf("viewer's page: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`<td class="held-by">cart (at hold), winback (at wait), an earlier journey version</td>`,
		`<tr data-profile="p049">`, `href="/console/audiences/retargeting?after=p049"`,
		`<a href="/console/journeys/cart">cart/retarget</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("retargeting's page lacks %s", want)
		}
	}
	if strings.Contains(page, `data-profile="p050"`) || strings.Contains(page, "export.csv") {
		t.Error("the viewer's first page shows the second page's member or the export")
	}
	if _, page := r.get(t, RoleViewer, "/console/audiences/retargeting?after=p049"); !strings.Contains(page, `data-profile="p052"`) || strings.Contains(page, `data-profile="p049"`) {
		t.Error("the second page is not the rest")
	}
	if resp, _ := r.get(t, RoleViewer, "/console/audiences/retargeting/export.csv"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer's export: %d, want 403", resp.StatusCode)
	}
	resp, body := r.get(t, RoleMarketer, "/console/audiences/retargeting/export.csv")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if resp.StatusCode != 200 || err != nil || len(rows) != membersPage+4 || !slices.Equal(rows[1], []string{"p000", "cart winback (earlier version)"}) || !slices.Equal(rows[0], []string{"profile_id", "held_by"}) {
		t.Errorf("export: %d, %d rows, first %q (%v)", resp.StatusCode, len(rows), rows[:min(2, len(rows))], err)
	}
	if resp, _ := r.get(t, RoleMarketer, "/console/audiences/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown audience: %d, want 404", resp.StatusCode)
	}
}
