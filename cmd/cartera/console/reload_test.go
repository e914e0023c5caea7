package console

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

func TestNewFileChange(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after []byte
		status        string
		added, rm     int
	}{
		{"equal", []byte("a\n"), []byte("a\n"), "", 0, 0},
		{"changed", []byte("a\nb\nc\n"), []byte("a\nB\nc\nd\n"), FileChanged, 2, 1},
		{"added", nil, []byte("a\nb\n"), FileAdded, 2, 0},
		{"removed", []byte("a\n"), nil, FileRemoved, 0, 1},
		{"emptied", []byte("a\n"), []byte{}, FileChanged, 0, 1},
		{"neither", nil, nil, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := NewFileChange("j.yaml", "journey", tc.before, tc.after)
			if tc.status == "" {
				if fc != nil {
					t.Fatalf("a change %+v, want none", fc)
				}
				return
			}
			if fc == nil || fc.Status != tc.status || fc.Added != tc.added || fc.Removed != tc.rm {
				t.Fatalf("change %+v, want %s +%d -%d", fc, tc.status, tc.added, tc.rm)
			}
			if u := fc.Unified(); !strings.HasPrefix(u, "--- in force/j.yaml\n+++ on disk/j.yaml\n@@ ") {
				t.Errorf("unified text %q", u)
			}
		})
	}
}

// reloadJourneys answers a dry run with one change, counting the calls.
type reloadJourneys struct {
	noJourneys
	dry, real int
}

func (r *reloadJourneys) Reload(_ context.Context, dryRun bool) (*ReloadResult, error) {
	if dryRun {
		r.dry++
	} else {
		r.real++
	}
	fc := NewFileChange("journeys/a.yaml", "journey", []byte("id: a\n# <b>old</b>\n"), []byte("id: a\n# <script>alert(1)</script>\n"))
	return &ReloadResult{Versions: map[string]string{"a": "v2"}, Changes: []FileChange{*fc}}, nil
}

// The reload page is for marketers; it validates without reloading and
// renders the diff's lines as text (html/template writes + as &#43;).
func TestReloadPage(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	j := &reloadJourneys{}
	r := newRig(t, &pagedAudiences{}, clock, func(o *Options) { o.Journeys = j })
	if resp, _ := r.get(t, RoleViewer, "/console/journeys/reload"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer: %d, want 403", resp.StatusCode)
	}
	resp, page := r.get(t, RoleMarketer, "/console/journeys/reload")
	if resp.StatusCode != 200 || j.dry != 1 || j.real != 0 {
		t.Fatalf("marketer: %d after %d dry runs and %d reloads", resp.StatusCode, j.dry, j.real)
	}
	for _, want := range []string{
		`<section class="file-change" data-file="journeys/a.yaml" data-status="changed">`,
		`<tr class="del"><td class="ln">2</td><td class="ln"></td><td class="code"><span class="sign">-</span># &lt;b&gt;old&lt;/b&gt;</td></tr>`,
		`<tr class="ins"><td class="ln"></td><td class="ln">2</td><td class="code"><span class="sign">&#43;</span># &lt;script&gt;alert(1)&lt;/script&gt;</td></tr>`,
		`<tr class="hunk"><td colspan="3">@@ -1,2 &#43;1,2 @@</td></tr>`,
		`id="reload"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the reload page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("a line of the diff is rendered as HTML")
	}
}
