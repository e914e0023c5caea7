package journeys

// Evaluation errors: a condition or value that fails to evaluate (a
// property the event does not have, a type it did not expect) decides as
// false, as before, but is no longer silent: it is an `error` action
// (simulate prints it, with the journey, step, expression, CEL message
// and event), a count per journey (eval_errors), the metric, and a WARN
// log line at most once a minute per journey and expression.

import (
	"sync"
	"time"

	"cartera/rules"
)

// ActError is a condition or value of a journey that failed to evaluate.
const ActError = "error"

// ErrorDetail is an error action's: where, what, why, on which event.
type ErrorDetail struct {
	// Field says where in the journey file: trigger.when, entry.key,
	// goal.when, exit_when.when, steps.<id>.when, ...
	Field      string `json:"field"`
	Expression string `json:"expression"`
	Error      string `json:"error"`
	Event      string `json:"event,omitempty"`
}

func (ErrorDetail) actionDetail() {}

// evalLogEvery bounds the WARN lines of one journey field.
const evalLogEvery = time.Minute

// evalLog rate-limits the WARN lines of evaluation errors.
type evalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// eval evaluates a condition of journey j (at step, field) as a bool; an
// error is reported and decides false.
func (r *run) eval(prg *rules.Program, in *rules.Input, j *Journey, step, field string) bool {
	if prg == nil {
		return true
	}
	ok, err := prg.Bool(in)
	if err != nil {
		r.evalError(prg, in, err, j, step, field)
		return false
	}
	return ok
}

// evalError reports a failed evaluation.
func (r *run) evalError(prg *rules.Program, in *rules.Input, err error, j *Journey, step, field string) {
	r.e.metrics.EvalErrors.Inc()
	d := ErrorDetail{Field: field, Expression: prg.Source, Error: err.Error()}
	if in != nil && in.Event != nil {
		d.Event = in.Event.Name
	}
	profile := ""
	if in != nil && in.Profile != nil {
		profile = in.Profile.ID
	}
	journey := ""
	if j != nil {
		journey = j.ID
		r.count(j.ID, "", "eval_errors", 1)
	}
	r.actions = append(r.actions, Action{At: r.now.UTC(), Profile: profile, Journey: journey, Step: step, Action: ActError, Detail: d})
	r.e.evalLog.warn(r.e, journey, step, d)
}

func (l *evalLog) warn(e *Engine, journey, step string, d ErrorDetail) {
	key := journey + "\x00" + d.Field + "\x00" + d.Expression
	now := time.Now() // rate limiting is about log volume, in wall time
	l.mu.Lock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < evalLogEvery {
		l.held[key]++
		l.mu.Unlock()
		return
	}
	held := l.held[key]
	l.last[key], l.held[key] = now, 0
	l.mu.Unlock()
	// The expression and CEL's message name fields, never their values.
	e.log.Warn("journey condition failed to evaluate", "journey", journey, "step", step, "field", d.Field,
		"expression", d.Expression, "error", d.Error, "event", d.Event, "earlier_unlogged", held)
}
