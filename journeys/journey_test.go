package journeys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/rules"
)

// parseEnv compiles testRules: journeys refer to its computed trait
// orders_count and its audiences customers and vip.
func parseEnv(t testing.TB) (*rules.Env, Known) {
	t.Helper()
	specs, err := rules.Parse("rules.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(specs, rules.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs.Env, Known{Audiences: []string{"customers", "vip"}, AdAudiences: []string{"retargeting"}}
}

// TestParseErrors: each bad file gives every mistake as file:line:col:
// message, pointing at the mistake itself.
func TestParseErrors(t *testing.T) {
	env, known := parseEnv(t)
	tests := []struct {
		name string
		src  string
		want string
		// at is what the file holds at the first error's position.
		at string
	}{
		{
			name: "unknown_step",
			src: `id: j
trigger: {event: Product Added}
steps:
  - id: pick
    branch:
      - when: profile.computed.orders_count > 0
        next: nowhere
      - else: done
  - id: done
    exit: true
`,
			want: `unknown_step.yaml:4:5: step pick: unknown step "nowhere"`,
			at:   "id: pick",
		},
		{
			name: "unreachable_step",
			src: `id: j
trigger: {event: Product Added}
steps:
  - id: hello
    send: {channel: email, template: hi}
  - id: stop
    exit: true
  - id: orphan
    send: {channel: email, template: never}
`,
			want: `unreachable_step.yaml:8:5: step orphan: unreachable from the first step`,
			at:   "id: orphan",
		},
		{
			name: "loop_without_wait",
			src: `id: j
trigger: {event: Product Added}
steps:
  - id: nag
    send: {channel: email, template: nag}
  - id: again
    branch:
      - when: profile.computed.orders_count == 0
        next: nag
      - else: done
  - id: done
    exit: true
`,
			// One error per loop, at the step that closes it.
			want: `loop_without_wait.yaml:6:5: step again: a loop with no wait`,
			at:   "id: again",
		},
		{
			name: "unknown_channel",
			src: `id: j
trigger: {event: Product Added}
steps:
  - id: hello
    send: {channel: pigeon, template: hi}
`,
			want: `unknown_channel.yaml:5:21: send.channel: unknown channel "pigeon": want one of email, sms, webhook, push, wallet`,
			at:   "pigeon",
		},
		{
			name: "cel_type_error",
			src: `id: j
trigger:
  event: Order Completed
  when: profile.computed.orders_count > "five"
steps:
  - id: hello
    send: {channel: email, template: hi}
`,
			want: `cel_type_error.yaml:4:39: found no matching overload for '_>_' applied to '(int, string)'`,
			at:   `> "five"`,
		},
		{
			name: "cel_not_bool",
			src: `id: j
trigger: {event: Product Added}
exit_when:
  - event: Order Completed
    when: profile.computed.orders_count
steps:
  - id: hello
    send: {channel: email, template: hi}
`,
			want: `cel_not_bool.yaml:5:11: expression gives int, want bool`,
			at:   "profile.computed.orders_count",
		},
		{
			name: "cel_unknown_trait",
			src: `id: j
trigger: {event: Product Added}
steps:
  - id: pick
    branch:
      - when: profile.computed.lifetime_value > 10.0
        next: hello
      - else: hello
  - id: hello
    send: {channel: email, template: hi}
`,
			want: `cel_unknown_trait.yaml:6:31: undefined field 'lifetime_value'`,
			at:   ".lifetime_value",
		},
		{
			name: "unknown_audience",
			src: `id: j
trigger:
  audience: {enter: big_spenders}
steps:
  - id: pick
    branch:
      - when: in_audience("vip") || in_audience("lapsed")
        next: hello
      - else: hello
  - id: hello
    audience: {add: lookalikes}
`,
			want: `unknown_audience.yaml:3:21: trigger.audience.enter: unknown audience "big_spenders"
unknown_audience.yaml:7:15: in_audience: unknown audience "lapsed"
unknown_audience.yaml:11:21: audience.add: unknown audience "lookalikes": declare it under ad_audiences in the policies`,
			at: "big_spenders",
		},
		{
			name: "split_not_100",
			src: `id: j
trigger: {event: Product Added}
steps:
  - id: ab
    split:
      - {name: a, percent: 50, next: hello}
      - {name: b, percent: 40, next: hello}
  - id: hello
    send: {channel: email, template: hi}
`,
			want: `split_not_100.yaml:6:7: split: percentages add up to 90, want 100`,
			at:   "- {name: a",
		},
		{
			name: "required_fields",
			src: `name: No id, no trigger, no steps
priority: 5
`,
			want: `required_fields.yaml:1:1: id is required
required_fields.yaml:1:1: trigger is required: an event, an audience enter/exit or a schedule
required_fields.yaml:1:1: steps are required`,
			at: "name:",
		},
		{
			name: "step_shapes",
			src: `id: Bad-Id
trigger: {event: Product Added, colour: red}
steps:
  - id: twice
    send: {channel: email, template: hi}
    wait: 1h
  - id: slow
    wait: a while
  - id: watch
    wait_for: {event: Email Opened}
  - id: nothing
`,
			want: `step_shapes.yaml:1:5: id: want lower_snake_case, got "Bad-Id"
step_shapes.yaml:2:33: trigger: unknown field "colour": want event, when, audience or schedule
step_shapes.yaml:6:5: step twice: one step, one action: already send
step_shapes.yaml:8:11: wait: want a duration such as 90d, 24h or 30m, got "a while"
step_shapes.yaml:10:15: wait_for: event and a positive timeout are required
step_shapes.yaml:11:5: step nothing: want one of send, wait, wait_for, branch, split, audience, set_trait, update_pass, exit`,
			at: "Bad-Id",
		},
		{
			name: "two_triggers",
			src: `id: j
trigger:
  event: Product Added
  schedule: {cron: "0 9 * * *", audience: customers}
steps:
  - id: hello
    send: {channel: email, template: hi}
`,
			want: `two_triggers.yaml:3:3: trigger: want one of event, audience or schedule`,
			at:   "event: Product Added",
		},
		{
			name: "bad_cron",
			src: `id: j
trigger:
  schedule: {cron: "61 * * * *", timezone: Mars/Olympus}
steps:
  - id: hello
    send: {channel: email, template: hi}
`,
			want: `bad_cron.yaml:3:20: trigger.schedule.cron: end of range (61) above maximum (59): 61
bad_cron.yaml:3:44: trigger.schedule.timezone: unknown time zone Mars/Olympus
bad_cron.yaml:3:13: trigger.schedule: audience is required (whom the schedule enters)`,
			at: `"61 * * * *"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.name + ".yaml"
			j, err := Parse(file, []byte(tt.src), env, known)
			if err == nil {
				t.Fatalf("Parse succeeded (journey %s with %d steps); want errors", j.ID, len(j.Steps))
			}
			var errs rules.FileErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse = %T %v, want rules.FileErrors", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, tt.want)
			}
			for _, e := range errs {
				if e.File != file {
					t.Errorf("error names file %q, want %q", e.File, file)
				}
			}
			if got := textAt(tt.src, errs[0].Line, errs[0].Col); !strings.HasPrefix(got, tt.at) {
				t.Errorf("first error %v points at %q, want %q", errs[0], firstLine(got), tt.at)
			}
		})
	}
}

// TestParseTemplates: with a list of templates, a send must name one.
func TestParseTemplates(t *testing.T) {
	env, known := parseEnv(t)
	known.Templates = []string{"welcome"}
	_, err := Parse("t.yaml", []byte(welcomeJourney), env, known)
	if err != nil {
		t.Errorf("known template: %v", err)
	}
	_, err = Parse("t.yaml", []byte(strings.Replace(welcomeJourney, "template: welcome", "template: welcom", 1)), env, known)
	if want := `t.yaml:7:38: send.template: unknown template "welcom"`; err == nil || err.Error() != want {
		t.Errorf("unknown template: %v, want %s", err, want)
	}
}

// TestParseGood: the journeys of these tests and of the examples compile,
// and the parser fills in what files leave out.
func TestParseGood(t *testing.T) {
	env, known := parseEnv(t)
	for name, src := range map[string]string{
		"welcome": welcomeJourney, "reminder": reminderJourney, "opened": openedJourney,
		"retarget": retargetJourney, "offer_v1": editV1, "offer_v2": editV2, "promo": policyJourney,
	} {
		if _, err := Parse(name+".yaml", []byte(src), env, known); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	j, err := Parse("opened.yaml", []byte(openedJourney), env, known)
	if err != nil {
		t.Fatal(err)
	}
	if j.Category != "marketing" || j.Name != "opened" {
		t.Errorf("defaults: category %q, name %q", j.Category, j.Name)
	}
	// A step without next goes on to the one below; exit and the waits'
	// paths do not.
	for id, next := range map[string]string{"first": "watch", "nudge": "done", "done": "", "thanks": ""} {
		if got := j.Step(id).Next; got != next {
			t.Errorf("step %s: next %q, want %q", id, got, next)
		}
	}
	if w := j.Step("watch"); w.Kind != StepWaitFor || w.Timeout != 24*time.Hour || w.OnEvent != "thanks" || w.OnTimeout != "nudge" {
		t.Errorf("watch = %+v", w)
	}
	if len(j.Version) != 12 {
		t.Errorf("version %q, want 12 hex digits", j.Version)
	}
	again, _ := Parse("elsewhere.yaml", []byte(openedJourney), env, known)
	edited, _ := Parse("opened.yaml", []byte(openedJourney+"\n# a comment\n"), env, known)
	if again.Version != j.Version || edited.Version == j.Version {
		t.Errorf("versions: %s, same bytes %s, edited %s; want the version to follow the bytes", j.Version, again.Version, edited.Version)
	}
}

// TestParseExamples: the journeys `make run` loads compile with the
// example rules and policies, and ask the rules for their event counts.
func TestParseExamples(t *testing.T) {
	rulePaths, err := filepath.Glob(filepath.Join("..", "examples", "rules", "*.yaml"))
	if err != nil || len(rulePaths) == 0 {
		t.Fatalf("example rules: %v %v", rulePaths, err)
	}
	rs, err := rules.Load(rules.EnvOptions{}, rulePaths...)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ReadPolicy(filepath.Join("..", "examples", "policies.yaml"), rs.Env)
	if err != nil {
		t.Fatal(err)
	}
	js, err := LoadDir(filepath.Join("..", "examples", "journeys"), rs.Env, knownOf(rs, pol))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range js {
		ids = append(ids, j.ID)
	}
	for _, want := range []string{"birthday", "cart_abandonment", "tier_upgrade"} {
		if !slices.Contains(ids, want) {
			t.Errorf("examples: journeys %q, want %s among them", ids, want)
		}
	}
	if _, err := NewSet(js, pol); err != nil {
		t.Error(err)
	}
	if len(pol.Suppress) == 0 || len(pol.Suppress[0].When.EventCounts()) == 0 {
		t.Errorf("the example policy's suppression asks for no event_count: %+v", pol.Suppress)
	}
}

// FuzzParse: no input makes the parser panic, and every error points into
// the file.
func FuzzParse(f *testing.F) {
	for _, src := range []string{welcomeJourney, reminderJourney, openedJourney, retargetJourney, editV2, "", "id: [", "steps: {}"} {
		f.Add(src)
	}
	paths, _ := filepath.Glob(filepath.Join("..", "examples", "journeys", "*.yaml"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	env, known := parseEnv(f)
	f.Fuzz(func(t *testing.T, src string) {
		j, err := Parse("f.yaml", []byte(src), env, known)
		if err == nil {
			if j.ID == "" || len(j.Steps) == 0 {
				t.Fatalf("accepted a journey without id or steps: %q", src)
			}
			return
		}
		var errs rules.FileErrors
		if !errors.As(err, &errs) {
			t.Fatalf("Parse = %T %v, want rules.FileErrors", err, err)
		}
		// YAML's line breaks: CR LF, CR and LF (a lone CR starts a line
		// for the parser, and for editors).
		lines := strings.Count(strings.ReplaceAll(src, "\r\n", "\n"), "\n") + strings.Count(strings.ReplaceAll(src, "\r\n", ""), "\r") + 1
		for _, e := range errs {
			if e.Line < 1 || e.Line > lines+1 || e.Col < 1 {
				t.Errorf("%v: outside the file of %d lines", e, lines)
			}
		}
	})
}

// textAt returns src from a 1-based line and column on.
func textAt(src string, line, col int) string {
	lines := strings.SplitAfter(src, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	l := []rune(lines[line-1])
	if col < 1 || col > len(l)+1 {
		return ""
	}
	return string(l[col-1:]) + strings.Join(lines[line:], "")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestLoadFilesInOrder: files compile several at a time, yet journeys and
// errors come back in file order, each error naming its own file and line.
func TestLoadFilesInOrder(t *testing.T) {
	env, known := parseEnv(t)
	dir := t.TempDir()
	var paths, wantIDs, wantErrFiles []string
	for i := range 40 {
		cond := "profile.computed.orders_count > 1"
		if i%7 == 3 {
			cond = "profile.computed.no_such_trait > 1"
			wantErrFiles = append(wantErrFiles, fmt.Sprintf("j%02d.yaml", i))
		} else {
			wantIDs = append(wantIDs, fmt.Sprintf("j_%d", i))
		}
		src := fmt.Sprintf("id: j_%d\ntrigger:\n  event: Signed Up\n  when: %s\nsteps:\n  - id: hello\n    send: {channel: email, template: hello}\n", i, cond)
		p := filepath.Join(dir, fmt.Sprintf("j%02d.yaml", i))
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	paths = append(paths, filepath.Join(dir, "missing.yaml"))
	wantErrFiles = append(wantErrFiles, "missing.yaml")

	js, err := LoadFiles(paths, env, known)
	var ids []string
	for _, j := range js {
		ids = append(ids, j.ID)
	}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("journeys = %v\nwant %v", ids, wantIDs)
	}
	var fe rules.FileErrors
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want rules.FileErrors", err)
	}
	var files []string
	for _, e := range fe {
		files = append(files, filepath.Base(e.File))
		if e.File != "" && filepath.Base(e.File) != "missing.yaml" && e.Line != 4 {
			t.Errorf("%s: line %d, want 4 (the when)", e.File, e.Line)
		}
	}
	if !slices.Equal(files, wantErrFiles) {
		t.Errorf("errors in %v\nwant %v", files, wantErrFiles)
	}
}
