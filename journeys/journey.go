package journeys

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"cartera/rules"
)

// Journey is a compiled journey file at one version.
type Journey struct {
	ID       string
	Name     string
	Version  string
	Priority int
	// Category is "marketing" (subject to suppression policies and caps)
	// or "transactional".
	Category string
	Trigger  Trigger
	Entry    Entry
	ExitWhen []*Condition
	Goal     *Condition
	Steps    []*Step
	byID     map[string]*Step
	// Source is the file's text, kept so instances can finish on the
	// version they started on after the file changes.
	Source []byte
	File   string
}

// Trigger starts instances.
type Trigger struct {
	// Event and When: an event of this name for which When holds.
	Event string
	When  *rules.Program
	// conjuncts are the parts of When's top-level && chain, compiled one
	// by one (nil when When is not such a chain): many journeys' triggers
	// share parts, which an event evaluates once.
	conjuncts []*rules.Program
	// AudienceEnter / AudienceExit: entering or leaving a rules audience.
	AudienceEnter string
	AudienceExit  string
	// Schedule: a cron schedule over the members of Audience.
	Cron     string
	Location *time.Location
	Audience string
	schedule cron.Schedule
}

// Entry rules.
type Entry struct {
	// Reentry allows a profile to enter again after its instance ended.
	Reentry bool
	// Cooldown is the least time between two entries of one profile.
	Cooldown time.Duration
	// Key makes one instance per key (a cart) instead of per profile.
	Key *rules.Program
}

// Condition is an event with a CEL condition (exit_when, goal, wait_for).
type Condition struct {
	Event string
	When  *rules.Program
	// KeepAudiences keeps the audiences this journey added when an exit
	// condition ends an instance (they are removed by default).
	KeepAudiences bool
	// Within is a goal's conversion window, counted from the entry (0:
	// any time while the instance lives).
	Within time.Duration
}

// Step kinds.
const (
	StepSend     = "send"
	StepWait     = "wait"
	StepWaitFor  = "wait_for"
	StepBranch   = "branch"
	StepSplit    = "split"
	StepAudience = "audience"
	StepSetTrait = "set_trait"
	StepPass     = "update_pass"
	StepExit     = "exit"
)

// Step is one step of a journey.
type Step struct {
	ID   string
	Kind string
	// Next is the step after this one ("" ends the journey).
	Next string

	// send
	Channel  string
	Template string
	// OnQuietHours, OnCap and MaxDelay override the policies' for this
	// send ("" and 0: the policies').
	OnQuietHours, OnCap string
	MaxDelay            time.Duration
	// At is when the send goes: "" at once, AtBestTime at the person's
	// best hour within Within (0: DefaultBestTimeWithin), Fallback
	// ("HH:00", "": DefaultBestTimeFallback) for people with no habits
	// learned yet (besttime.go).
	At       string
	Within   time.Duration
	Fallback string
	// wait
	Wait      time.Duration
	WaitUntil string // "HH:MM" local time of day in the profile's timezone
	// wait_for
	For       *Condition
	Timeout   time.Duration
	OnEvent   string
	OnTimeout string
	// branch
	Cases []Case
	// split
	Variants []Variant
	// Experiment names the split's experiment (default: the step id):
	// assignments are sticky per person, journey and experiment.
	Experiment string
	// Allocation is AllocFixed ("" too) or AllocAdaptive (adaptive.go).
	Allocation string
	// audience
	Add, Remove string
	// set_trait
	Trait string
	Value *rules.Program
	// update_pass
	Fields map[string]*rules.Program
	Push   string

	node *yaml.Node
}

// Case is one arm of a branch; When nil is the default.
type Case struct {
	When *rules.Program
	Next string
}

// Variant is one arm of a split. A control arm gets nothing (it goes to
// Next, or ends) but is tracked like the others.
type Variant struct {
	Name    string
	Percent int
	Next    string
	Control bool
	// why is what the history says of a person in it, made once at
	// parse (splitWhy).
	why string
}

// Channels a send can use.
// A send on "wallet" issues the template's pass (or keeps the one the
// person holds).
var channels = []string{"email", "sms", "webhook", "push", "wallet"}

// Known names a journey file may refer to, for validation.
type Known struct {
	// Audiences are the rules audiences (triggers, in_audience).
	Audiences []string
	// AdAudiences are the audiences journeys add people to.
	AdAudiences []string
	// Templates lists template ids; nil skips the check.
	Templates []string
	// PassTemplates lists the pass templates a send on wallet may issue;
	// nil skips the check.
	PassTemplates []string
}

// Parse reads and compiles one journey file.
func Parse(name string, b []byte, env *rules.Env, known Known) (*Journey, error) {
	f, root, err := rules.OpenFile(name, b)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, rules.FileErrors{{File: name, Line: 1, Col: 1, Msg: "empty journey file"}}
	}
	p := &parser{f: f, env: env, known: known}
	j := &Journey{Source: b, File: name, Category: "marketing", byID: map[string]*Step{}}
	h := sha256.Sum256(b)
	j.Version = hex.EncodeToString(h[:6])
	var stepsNode *yaml.Node
	f.Mapping(root, "journey file", func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			j.ID = f.String(v, key)
			if !validID(j.ID) {
				f.Errorf(v, "id: want lower_snake_case, got %q", j.ID)
			}
		case "name":
			j.Name = f.String(v, key)
		case "priority":
			j.Priority = f.Int(v, key)
		case "category":
			j.Category = f.String(v, key)
			if j.Category != "marketing" && j.Category != "transactional" {
				f.Errorf(v, "category: want marketing or transactional, got %q", j.Category)
			}
		case "trigger":
			p.trigger(v, &j.Trigger)
		case "entry":
			p.entry(v, &j.Entry)
		case "exit_when":
			f.Sequence(v, key, func(item *yaml.Node) {
				if c := p.condition(item, key, true); c != nil {
					j.ExitWhen = append(j.ExitWhen, c)
				}
			})
		case "goal":
			j.Goal = p.condition(v, key, false)
		case "steps":
			stepsNode = v
		default:
			f.Errorf(k, "unknown field %q: want id, name, priority, category, trigger, entry, exit_when, goal or steps", key)
		}
	})
	if j.ID == "" {
		f.Errorf(root, "id is required")
	}
	if j.Name == "" {
		j.Name = j.ID
	}
	if j.Trigger.Event == "" && j.Trigger.AudienceEnter == "" && j.Trigger.AudienceExit == "" && j.Trigger.Cron == "" {
		f.Errorf(root, "trigger is required: an event, an audience enter/exit or a schedule")
	}
	if stepsNode == nil {
		f.Errorf(root, "steps are required")
	} else {
		p.steps(stepsNode, j)
		checkAdaptive(f, j)
	}
	if err := f.Errors(); err != nil {
		return nil, err
	}
	return j, nil
}

type parser struct {
	f     *rules.File
	env   *rules.Env
	known Known
}

func (p *parser) compile(x rules.Expr, want *types.Type) *rules.Program {
	prg := p.f.Compile(p.env, x, want)
	if prg != nil {
		p.checkAudiences(prg, x)
	}
	return prg
}

// checkAudiences reports in_audience calls on audiences the rules do not declare.
func (p *parser) checkAudiences(prg *rules.Program, x rules.Expr) {
	for _, a := range prg.Audiences() {
		if !slices.Contains(p.known.Audiences, a) {
			p.f.Add(x.ErrorAt(fmt.Errorf("in_audience: unknown audience %q", a)))
		}
	}
}

func (p *parser) trigger(n *yaml.Node, t *Trigger) {
	f := p.f
	f.Mapping(n, "trigger", func(key string, k, v *yaml.Node) {
		switch key {
		case "event":
			t.Event = f.String(v, "trigger.event")
		case "when":
			t.When = p.compile(f.Expr(v, "trigger.when"), types.BoolType)
			if t.When != nil {
				t.conjuncts = p.env.Conjuncts(t.When.Source)
			}
		case "audience":
			f.Mapping(v, "trigger.audience", func(key string, k, v *yaml.Node) {
				name := f.String(v, "trigger.audience."+key)
				if !slices.Contains(p.known.Audiences, name) {
					f.Errorf(v, "trigger.audience.%s: unknown audience %q", key, name)
				}
				switch key {
				case "enter":
					t.AudienceEnter = name
				case "exit":
					t.AudienceExit = name
				default:
					f.Errorf(k, "trigger.audience: want enter or exit, got %q", key)
				}
			})
		case "schedule":
			f.Mapping(v, "trigger.schedule", func(key string, k, v *yaml.Node) {
				switch key {
				case "cron":
					t.Cron = f.String(v, "trigger.schedule.cron")
					s, err := cron.ParseStandard(t.Cron)
					if err != nil {
						f.Errorf(v, "trigger.schedule.cron: %v", err)
					}
					t.schedule = s
				case "timezone":
					loc, err := time.LoadLocation(f.String(v, "trigger.schedule.timezone"))
					if err != nil {
						f.Errorf(v, "trigger.schedule.timezone: %v", err)
					}
					t.Location = loc
				case "audience":
					t.Audience = f.String(v, "trigger.schedule.audience")
					if !slices.Contains(p.known.Audiences, t.Audience) {
						f.Errorf(v, "trigger.schedule.audience: unknown audience %q", t.Audience)
					}
				default:
					f.Errorf(k, "trigger.schedule: unknown field %q: want cron, timezone or audience", key)
				}
			})
			if t.Location == nil {
				t.Location = time.UTC
			}
			if t.Audience == "" {
				f.Errorf(v, "trigger.schedule: audience is required (whom the schedule enters)")
			}
		default:
			f.Errorf(k, "trigger: unknown field %q: want event, when, audience or schedule", key)
		}
	})
	kinds := 0
	for _, set := range []bool{t.Event != "", t.AudienceEnter != "" || t.AudienceExit != "", t.Cron != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		f.Errorf(n, "trigger: want one of event, audience or schedule")
	}
	if t.When != nil && t.Event == "" && t.Cron == "" {
		f.Errorf(n, "trigger.when needs trigger.event or trigger.schedule")
	}
}

func (p *parser) entry(n *yaml.Node, e *Entry) {
	f := p.f
	f.Mapping(n, "entry", func(key string, k, v *yaml.Node) {
		switch key {
		case "reentry":
			e.Reentry = f.Bool(v, "entry.reentry")
		case "cooldown":
			e.Cooldown = f.Duration(v, "entry.cooldown")
		case "key":
			e.Key = p.compile(f.Expr(v, "entry.key"), types.StringType)
		default:
			f.Errorf(k, "entry: unknown field %q: want reentry, cooldown or key", key)
		}
	})
}

func (p *parser) condition(n *yaml.Node, field string, exit bool) *Condition {
	f := p.f
	c := &Condition{}
	ok := f.Mapping(n, field, func(key string, k, v *yaml.Node) {
		switch key {
		case "event":
			c.Event = f.String(v, field+".event")
		case "when":
			c.When = p.compile(f.Expr(v, field+".when"), types.BoolType)
		case "keep_audiences":
			if !exit {
				f.Errorf(k, "%s: keep_audiences is for exit_when", field)
			}
			c.KeepAudiences = f.Bool(v, field+".keep_audiences")
		case "within":
			if field != "goal" {
				f.Errorf(k, "%s: within is for goal", field)
			}
			if c.Within = f.Duration(v, field+".within"); c.Within <= 0 {
				f.Errorf(v, "%s.within: want a positive duration such as 14d", field)
			}
		default:
			f.Errorf(k, "%s: unknown field %q: want event, when, within (goal) or keep_audiences (exit_when)", field, key)
		}
	})
	if !ok {
		return nil
	}
	if c.Event == "" {
		f.Errorf(n, "%s: event is required", field)
	}
	return c
}

func (p *parser) steps(n *yaml.Node, j *Journey) {
	f := p.f
	f.Sequence(n, "steps", func(item *yaml.Node) {
		s := p.step(item)
		if s == nil {
			return
		}
		if _, dup := j.byID[s.ID]; dup {
			f.Errorf(item, "step %q declared twice", s.ID)
			return
		}
		j.byID[s.ID] = s
		j.Steps = append(j.Steps, s)
	})
	if len(j.Steps) == 0 {
		if len(n.Content) == 0 {
			f.Errorf(n, "steps: want at least one step")
		}
		return
	}
	// A step without next goes on to the one below it (the last ends).
	for i, s := range j.Steps {
		if s.Next == "" && i+1 < len(j.Steps) && s.Kind != StepExit && s.Kind != StepBranch && s.Kind != StepSplit {
			s.Next = j.Steps[i+1].ID
		}
	}
	p.checkGraph(j)
}

// checkGraph reports steps that name unknown steps, steps no path reaches,
// and loops that never wait.
func (p *parser) checkGraph(j *Journey) {
	f := p.f
	for _, s := range j.Steps {
		for _, next := range s.successors() {
			if next == "" {
				continue
			}
			if _, ok := j.byID[next]; !ok {
				f.Errorf(s.node, "step %s: unknown step %q", s.ID, next)
			}
		}
	}
	if f.Count() > 0 {
		return
	}
	reached := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		if id == "" || reached[id] {
			return
		}
		reached[id] = true
		for _, next := range j.byID[id].successors() {
			walk(next)
		}
	}
	walk(j.Steps[0].ID)
	for _, s := range j.Steps {
		if !reached[s.ID] {
			f.Errorf(s.node, "step %s: unreachable from the first step", s.ID)
		}
	}
	// A cycle through steps that take no time would run forever.
	state := map[string]int{}
	var visit func(id string) bool
	visit = func(id string) bool {
		s := j.byID[id]
		if s == nil || s.Kind == StepWait || s.Kind == StepWaitFor {
			return false
		}
		switch state[id] {
		case 1:
			return true
		case 2:
			return false
		}
		state[id] = 1
		for _, next := range s.successors() {
			if visit(next) {
				f.Errorf(s.node, "step %s: a loop with no wait", s.ID)
				state[id] = 2
				return false
			}
		}
		state[id] = 2
		return false
	}
	for _, s := range j.Steps {
		visit(s.ID)
	}
}

func (s *Step) successors() []string {
	switch s.Kind {
	case StepWaitFor:
		return []string{s.OnEvent, s.OnTimeout}
	case StepBranch:
		var out []string
		for _, c := range s.Cases {
			out = append(out, c.Next)
		}
		return out
	case StepSplit:
		var out []string
		for _, v := range s.Variants {
			out = append(out, v.Next)
		}
		return out
	case StepExit:
		return nil
	}
	return []string{s.Next}
}

func (p *parser) step(n *yaml.Node) *Step {
	f := p.f
	s := &Step{node: n}
	before := f.Count()
	f.Mapping(n, "step", func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			s.ID = f.String(v, "id")
		case "next":
			s.Next = f.String(v, "next")
		case StepSend:
			p.kind(s, k, StepSend)
			var tnode *yaml.Node
			f.Mapping(v, "send", func(key string, k, v *yaml.Node) {
				switch key {
				case "channel":
					s.Channel = f.String(v, "send.channel")
					if !slices.Contains(channels, s.Channel) {
						f.Errorf(v, "send.channel: unknown channel %q: want one of %s", s.Channel, strings.Join(channels, ", "))
					}
				case "template":
					s.Template = f.String(v, "send.template")
					tnode = v
				case "on_quiet_hours":
					s.OnQuietHours = delayMode(f, v, "send.on_quiet_hours")
				case "on_cap":
					s.OnCap = delayMode(f, v, "send.on_cap")
				case "max_delay":
					s.MaxDelay = maxDelay(f, v, "send.max_delay")
				case "at", "within", "fallback":
					readAt(f, s, v, key)
				default:
					f.Errorf(k, "send: unknown field %q: want channel, template, on_quiet_hours, on_cap, max_delay, at, within or fallback", key)
				}
			})
			checkAt(f, s, v)
			if s.Channel == "" || s.Template == "" {
				f.Errorf(v, "send: channel and template are required")
			} else if known := p.known.Templates; s.Channel == "wallet" {
				if known := p.known.PassTemplates; known != nil && !slices.Contains(known, s.Template) {
					f.Errorf(tnode, "send.template: unknown pass template %q", s.Template)
				}
			} else if known != nil && !slices.Contains(known, s.Template) {
				f.Errorf(tnode, "send.template: unknown template %q", s.Template)
			}
		case StepWait:
			p.kind(s, k, StepWait)
			if v.Kind == yaml.ScalarNode {
				s.Wait = f.Duration(v, "wait")
				return
			}
			f.Mapping(v, "wait", func(key string, k, v *yaml.Node) {
				switch key {
				case "duration":
					s.Wait = f.Duration(v, "wait.duration")
				case "until":
					s.WaitUntil = f.String(v, "wait.until")
					if _, err := time.Parse("15:04", s.WaitUntil); err != nil {
						f.Errorf(v, "wait.until: want a local time of day HH:MM, got %q", s.WaitUntil)
					}
				default:
					f.Errorf(k, "wait: unknown field %q: want duration or until", key)
				}
			})
		case StepWaitFor:
			p.kind(s, k, StepWaitFor)
			s.For = &Condition{}
			f.Mapping(v, "wait_for", func(key string, k, v *yaml.Node) {
				switch key {
				case "event":
					s.For.Event = f.String(v, "wait_for.event")
				case "when":
					s.For.When = p.compile(f.Expr(v, "wait_for.when"), types.BoolType)
				case "timeout":
					s.Timeout = f.Duration(v, "wait_for.timeout")
				case "on_event":
					s.OnEvent = f.String(v, "wait_for.on_event")
				case "on_timeout":
					s.OnTimeout = f.String(v, "wait_for.on_timeout")
				default:
					f.Errorf(k, "wait_for: unknown field %q: want event, when, timeout, on_event or on_timeout", key)
				}
			})
			if s.For.Event == "" || s.Timeout <= 0 {
				f.Errorf(v, "wait_for: event and a positive timeout are required")
			}
		case StepBranch:
			p.kind(s, k, StepBranch)
			f.Sequence(v, "branch", func(item *yaml.Node) {
				var c Case
				f.Mapping(item, "branch case", func(key string, k, v *yaml.Node) {
					switch key {
					case "when":
						c.When = p.compile(f.Expr(v, "branch.when"), types.BoolType)
					case "next":
						c.Next = f.String(v, "branch.next")
					case "else":
						c.Next = f.String(v, "branch.else")
					default:
						f.Errorf(k, "branch: unknown field %q: want when and next, or else", key)
					}
				})
				s.Cases = append(s.Cases, c)
			})
		case StepSplit:
			p.kind(s, k, StepSplit)
			p.split(s, v)
		case StepAudience:
			p.kind(s, k, StepAudience)
			f.Mapping(v, "audience", func(key string, k, v *yaml.Node) {
				name := f.String(v, "audience."+key)
				if !slices.Contains(p.known.AdAudiences, name) {
					f.Errorf(v, "audience.%s: unknown audience %q: declare it under ad_audiences in the policies", key, name)
				}
				switch key {
				case "add":
					s.Add = name
				case "remove":
					s.Remove = name
				default:
					f.Errorf(k, "audience: want add or remove, got %q", key)
				}
			})
		case StepSetTrait:
			p.kind(s, k, StepSetTrait)
			f.Mapping(v, "set_trait", func(key string, k, v *yaml.Node) {
				switch key {
				case "name":
					s.Trait = f.String(v, "set_trait.name")
				case "value":
					s.Value = p.compile(f.Expr(v, "set_trait.value"), nil)
				default:
					f.Errorf(k, "set_trait: unknown field %q: want name or value", key)
				}
			})
		case StepPass:
			p.kind(s, k, StepPass)
			s.Fields = map[string]*rules.Program{}
			f.Mapping(v, "update_pass", func(key string, k, v *yaml.Node) {
				switch key {
				case "push":
					s.Push = f.String(v, "update_pass.push")
				case "fields":
					f.Mapping(v, "update_pass.fields", func(key string, k, v *yaml.Node) {
						s.Fields[key] = p.compile(f.Expr(v, "update_pass.fields."+key), nil)
					})
				default:
					f.Errorf(k, "update_pass: unknown field %q: want fields or push", key)
				}
			})
		case StepExit:
			p.kind(s, k, StepExit)
		default:
			f.Errorf(k, "step: unknown field %q", key)
		}
	})
	if s.ID == "" {
		f.Errorf(n, "step: id is required")
	} else if !validID(s.ID) {
		f.Errorf(n, "step: id must be lower_snake_case, got %q", s.ID)
	}
	if s.Kind == "" && f.Count() == before {
		f.Errorf(n, "step %s: want one of send, wait, wait_for, branch, split, audience, set_trait, update_pass, exit", s.ID)
	}
	if f.Count() > before {
		return nil
	}
	return s
}

func (p *parser) kind(s *Step, k *yaml.Node, kind string) {
	if s.Kind != "" {
		p.f.Errorf(k, "step %s: one step, one action: already %s", s.ID, s.Kind)
	}
	s.Kind = kind
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// reactsTo reports whether an event of the name may move a live instance
// of this journey: a goal, an exit_when or a wait_for on it.
func (j *Journey) reactsTo(event string) bool {
	if j.Goal != nil && j.Goal.Event == event {
		return true
	}
	for _, c := range j.ExitWhen {
		if c.Event == event {
			return true
		}
	}
	for _, s := range j.Steps {
		if s.Kind == StepWaitFor && s.For != nil && s.For.Event == event {
			return true
		}
	}
	return false
}

// Step returns a step by id.
func (j *Journey) Step(id string) *Step { return j.byID[id] }

// EventCounts lists what event_count asks of the rules index, for every
// condition of the journey.
func (j *Journey) EventCounts() []rules.EventCount {
	var out []rules.EventCount
	add := func(p *rules.Program) {
		if p != nil {
			out = append(out, p.EventCounts()...)
		}
	}
	add(j.Trigger.When)
	add(j.Entry.Key)
	for _, c := range j.ExitWhen {
		add(c.When)
	}
	if j.Goal != nil {
		add(j.Goal.When)
	}
	for _, s := range j.Steps {
		if s.For != nil {
			add(s.For.When)
		}
		for _, c := range s.Cases {
			add(c.When)
		}
		add(s.Value)
		for _, p := range s.Fields {
			add(p)
		}
	}
	return out
}
