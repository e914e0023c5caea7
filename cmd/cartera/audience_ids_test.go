package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServeAudienceAddCarriesEmailOfTheSameEvent: one identify that brings
// a person's email, vip: true and ads consent enters a journey on the vip
// audience whose step adds them to retargeting: the add reaches Meta with
// that email, and the profile records Audience Synced. (The engine once
// read the person as stored before the commit, without the email, and the
// add was dropped without a word.)
func TestServeAudienceAddCarriesEmailOfTheSameEvent(t *testing.T) {
	t.Parallel()
	rig := newDeliveryRig(t, "")
	f, err := os.OpenFile(filepath.Join(rig.dir, "rules", "audiences.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n  - name: vip\n    expression: has(profile.traits.vip) && profile.traits.vip == true\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	journey := "id: vip_retarget\ntrigger:\n  audience: {enter: vip}\nsteps:\n  - id: add\n    audience: {add: retargeting}\n"
	if err := os.WriteFile(filepath.Join(rig.dir, "journeys", "vip_retarget.yaml"), []byte(journey), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := rig.serve(t, nil)

	mustOK(t, s.send(t, dlWebKey, "/v1/identify",
		`{"userId":"u-vera","traits":{"email":"Vera@Example.com","vip":true,"consent":{"ads":true}}}`))
	vera := [2]string{hashOf("vera@example.com"), ""}
	eventually(t, 10*time.Second, "the vip's add on Meta", func() bool {
		_, ok := metaRows(t, rig.meta.Hits(), "POST", dlRetargetPath)[vera]
		return ok
	})
	eventually(t, 10*time.Second, "Audience Synced on the profile", func() bool {
		for _, ev := range eventsNamed(s.profile(t, "user_id:u-vera"), "Audience Synced") {
			if p := props(ev); p["destination"] == "meta" && p["audience"] == "retargeting" && p["op"] == "add" {
				return true
			}
		}
		return false
	})
}
