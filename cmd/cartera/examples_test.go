package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// exampleScenarios is what each examples/events/*.ndjson must show when
// simulate replays it through the examples' own config (the README tells
// a marketer to run them). Every file there needs an entry: a new story
// without one fails the test. Lines are summaries (see summarize); want
// holds in order, as prefixes, with other actions allowed between them.
var exampleScenarios = map[string]scenario{
	"cart_abandonment": {
		want: []string{
			"2026-11-20T10:05:00Z cart_abandonment - enter key=c1 trigger=Product Added",
			// Ana is in the half-hour arm of the timing experiment, Ben
			// in the at-once arm.
			"2026-11-20T10:35:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-20T15:10:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-21T08:30:00Z cart_abandonment done exit reason=exit step variant=at_once",
			"2026-11-21T10:35:00Z cart_abandonment retarget audience_add audience audience=retargeting",
			"2026-11-21T17:00:00Z cart_abandonment hold audience_remove audience audience=retargeting reason=exit_when: Order Completed",
			"2026-11-21T17:00:00Z cart_abandonment hold exit reason=exit_when: Order Completed variant=half_hour",
		},
		never: []string{"suppressed", "variant=control"},
	},
	"cart_experiment": {
		want: []string{
			// Lola and Marc: at once; Olga: the control (nothing, and
			// again a week later); Sol: half an hour later.
			"2026-11-23T10:01:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-23T10:06:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-23T10:16:00Z cart_abandonment - enter key=olga-1",
			"2026-11-23T10:16:00Z cart_abandonment done exit reason=exit step variant=control",
			"2026-11-23T10:43:00Z cart_abandonment - enter key=sol-1",
			"2026-11-23T11:13:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-23T12:01:00Z cart_abandonment opened goal event=Order Completed variant=at_once",
			"2026-11-24T10:06:00Z cart_abandonment retarget audience_add audience audience=retargeting",
			"2026-11-24T11:13:00Z cart_abandonment retarget audience_add audience audience=retargeting",
			"2026-11-30T10:00:00Z cart_abandonment done exit reason=exit step variant=control",
			"2026-12-01T10:06:00Z cart_abandonment done exit reason=exit step variant=at_once",
			"2026-12-01T11:13:00Z cart_abandonment done exit reason=exit step variant=half_hour",
		},
		// The control gets no email and joins no audience.
		never: []string{"suppressed", "10:16:00Z cart_abandonment reminder", "10:36:00Z cart_abandonment", "2026-11-24T10:16:00Z", "2026-11-30T10:00:00Z cart_abandonment reminder"},
	},
	"tier_upgrade": {
		want: []string{
			"2026-11-24T18:30:00Z tier_upgrade - enter trigger=Order Completed",
			"2026-11-24T18:30:00Z tier_upgrade set_gold set_trait trait=tier value=gold",
			"2026-11-24T18:30:00Z tier_upgrade pass pass_update wallet push=You are now Gold",
			"2026-11-24T18:30:00Z tier_upgrade congratulate send email template=welcome_gold",
			"2026-11-25T21:15:00Z tier_upgrade - enter trigger=Order Completed",
			"2026-11-25T21:15:00Z tier_upgrade pass pass_update wallet push=You are now Gold",
			"2026-11-25T21:15:00Z tier_upgrade congratulate send email template=welcome_gold",
		},
		// Transactional at night: nothing is held back to the morning;
		// Lucia's sixth order (27 November) does not start it again.
		// (Her sales at the till are held back from the ad platforms,
		// "suppressed ads": she never said yes to ads.)
		never: []string{"suppressed email", "suppressed wallet", "delayed", "2026-11-26T08:00:00Z tier_upgrade", "2026-11-27T10:00:00Z tier_upgrade"},
	},
	"birthday": {
		want: []string{
			"2026-11-22T08:00:00Z birthday - enter trigger=Scheduled",
			"2026-11-22T08:00:00Z birthday treat send email template=birthday",
			"2026-11-24T08:00:00Z birthday - enter trigger=Scheduled",
			"2026-11-24T08:00:00Z birthday treat suppressed email reason=suppression: after_purchase",
		},
	},
	"welcome": {
		want: []string{
			// Nora: the card, then the email that carries its links.
			"2026-11-16T10:00:00Z welcome - enter trigger=Signed Up",
			"2026-11-16T10:00:00Z welcome issue_pass send wallet template=loyalty",
			"2026-11-16T10:00:00Z welcome welcome_email send email template=welcome",
			"2026-11-16T10:00:00Z welcome welcome_email exit reason=completed",
			// Tomás, at night: transactional, so quiet hours do not apply.
			"2026-11-16T22:40:00Z welcome issue_pass send wallet template=loyalty",
			"2026-11-16T22:40:00Z welcome welcome_email send email template=welcome",
			// Iker: a card, but no email without consent.
			"2026-11-17T17:30:00Z welcome issue_pass send wallet template=loyalty",
			"2026-11-17T17:30:00Z welcome welcome_email suppressed email reason=consent: no email consent template=welcome",
		},
		// Olga's newsletter sign-up has no card: no pass, no welcome.
		never: []string{"2026-11-18", "quiet_hours"},
	},
	"order_status": {
		want: []string{
			// Carmen's web order, step by step on her card, and
			// Diego's two orders, each moved by its own events.
			"2026-11-16T10:20:00Z order_status - enter key=W-1001 trigger=Order Completed",
			"2026-11-16T10:20:00Z order_status processing pass_update wallet fields=map[order:Order W-1001: processing]",
			"2026-11-17T08:05:00Z order_status on_its_way pass_update wallet fields=map[order:Order W-1001: shipped] push=Your order is on its way",
			"2026-11-17T18:00:00Z delivery_window - enter key=W-1001/tomorrow 10–12 trigger=Delivery Scheduled",
			"2026-11-17T18:00:00Z delivery_window window pass_update wallet fields=map[order:Arriving tomorrow 10–12] push=Your delivery slot is booked",
			"2026-11-18T09:00:00Z order_status - enter key=A-2002",
			"2026-11-18T09:30:00Z order_status - enter key=A-2003",
			"2026-11-18T11:12:00Z order_status done pass_update wallet fields=map[order:Order W-1001: delivered] push=Delivered. Enjoy your new shoes!",
			"2026-11-18T11:12:00Z order_status done exit reason=completed",
			"2026-11-19T08:00:00Z order_status on_its_way pass_update wallet fields=map[order:Order A-2003: shipped]",
			// Carmen's sale at the till would go back to the ad platforms
			// (channels.conversions), but she never said yes to ads.
			"2026-11-19T17:00:00Z - - suppressed ads destination=meta event=Order Completed order_id=pos-7731 reason=consent: no ads consent",
			"2026-11-19T17:00:00Z - - suppressed ads destination=google event=Order Completed order_id=pos-7731 reason=consent: no ads consent",
			"2026-11-20T08:00:00Z order_status on_its_way pass_update wallet fields=map[order:Order A-2002: shipped]",
			"2026-11-20T12:40:00Z order_status done pass_update wallet fields=map[order:Order A-2003: delivered]",
			"2026-11-21T10:05:00Z order_status done pass_update wallet fields=map[order:Order A-2002: delivered]",
		},
		// The till order is not followed; nothing waits for a timeout.
		// (The survey offer of their second orders follows, as in survey.)
		never: []string{"key=pos-7731", "Order pos-7731", "2026-11-19T17:00:00Z order_status", "suppressed email", "suppressed wallet", "suppressed audience", "conversion ads"},
	},
	"survey": {
		want: []string{
			"2026-11-09T11:00:00Z survey_offer - enter trigger=Order Completed",
			"2026-11-10T12:00:00Z survey_offer - enter trigger=Order Completed",
			// Marta: the offer three days after her second order, at
			// 10:00 Madrid; she answers yes and is invited at 19:00.
			"2026-11-13T09:00:00Z survey_offer offer send email template=survey_offer",
			"2026-11-13T11:30:00Z survey_offer answer goal event=Survey Answered",
			"2026-11-13T11:30:00Z event_invitation - enter trigger=Survey Answered",
			"2026-11-13T18:00:00Z event_invitation invite set_trait trait=invitation value=members_night",
			"2026-11-13T18:00:00Z event_invitation date set_trait trait=event_at value=2026-11-20T18:00:00Z",
			"2026-11-13T18:00:00Z event_invitation ticket pass_update wallet fields=map[offer:Members night: you are invited] push=You are invited to our members night",
			// Pablo bought again on the 12th: held back, sent three days on.
			"2026-11-14T09:00:00Z survey_offer offer suppressed email reason=suppression: after_purchase template=survey_offer",
			"2026-11-17T09:00:00Z survey_offer offer send email template=survey_offer",
			"2026-11-17T20:00:00Z survey_offer answer goal event=Survey Answered",
			// Marta: the day before the night, then back to a loyalty card.
			"2026-11-19T18:00:00Z event_invitation reminder send email template=event_reminder",
			"2026-11-19T18:00:00Z event_invitation reminder_push pass_update wallet push=Tomorrow: members night",
			"2026-11-21T18:00:00Z event_invitation back_to_loyalty set_trait trait=invitation", // value "": empty values are left out
			"2026-11-21T18:00:00Z event_invitation clear_offer pass_update wallet fields=map[offer:]",
			"2026-11-21T18:00:00Z event_invitation clear_offer exit reason=completed",
		},
		never: []string{
			// No survey email while Pablo's after_purchase window holds
			// (12 November 17:30 to 15 November 17:30).
			"2026-11-14T09:00:00Z survey_offer offer send", "2026-11-15T09:00:00Z survey_offer offer send",
			// Pablo will not come: no invitation for him.
			"2026-11-17T20:00:00Z event_invitation", "2026-11-18T18:00:00Z event_invitation",
		},
	},
}

// TestSimulateExamples replays examples/events/*.ndjson through the
// examples' own config, as the README tells a marketer to.
func TestSimulateExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "events", "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example scenarios: %v", err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".ndjson")
		seen[name] = true
		sc, ok := exampleScenarios[name]
		if !ok {
			t.Errorf("%s: no entry in exampleScenarios (what must it show?)", file)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := []string{"--config", filepath.Join("..", "..", "examples", "cartera.yaml"), "--events", file}
			if sc.until != "" {
				args = append(args, "--until", sc.until)
			}
			out, stderr, err := simulateRun(t, args...)
			if err != nil {
				t.Fatalf("simulate: %v\nstderr:\n%s", err, stderr)
			}
			checkScenario(t, checkActions(t, out), sc)
		})
	}
	for name := range exampleScenarios {
		if !seen[name] {
			t.Errorf("exampleScenarios names %s, but examples/events/%s.ndjson does not exist", name, name)
		}
	}
}
