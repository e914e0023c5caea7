package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
)

// A backtest runs journeys over the events the event log still holds, on a
// store of its own (nothing of the live store changes and nothing is
// sent), and reports what they would have done.

// Bounds of one backtest: the events it replays and the action lines it
// returns (the summary counts them all).
const (
	maxBacktestEvents  = 2_000_000
	maxBacktestActions = 5_000
	maxBacktestSample  = 20
	maxBacktestFiles   = 20
	maxBacktestFile    = 256 << 10
	// maxBacktestTime bounds one backtest's run (app.backtestTime); a
	// longer one stops with a 400 that asks for a shorter window.
	maxBacktestTime = 5 * time.Minute
)

// errBacktestBusy answers a backtest asked for while another runs: each
// may hold up to maxBacktestEvents events in memory and a store of its
// own, so they run one at a time.
var errBacktestBusy = errors.New("a backtest is already running; try again when it has finished")

// backtestRequest asks for a backtest.
type backtestRequest struct {
	// Files are journey files (file name → YAML) to run alone; none: the
	// journeys in force.
	Files map[string]string `json:"files,omitempty"`
	// Since is how far back the events go: a duration ("36h") or days
	// ("7d"); default 7d. The log's retention bounds it.
	Since string `json:"since,omitempty"`
	// Until is how long timers still fire after the last event (default
	// 7d, as simulate's --until).
	Until string `json:"until,omitempty"`
	// maxActions caps the actions listed (0: maxBacktestActions): a
	// cluster node asks each partition for its share (?actions=).
	maxActions int
}

// backtestResult is what a backtest would have done.
type backtestResult struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Events  int       `json:"events"`
	Skipped int       `json:"skipped"`
	// Journeys are the journey ids that ran.
	Journeys   []string       `json:"journeys"`
	Entered    int            `json:"entered"`
	People     int            `json:"people"`
	Sends      map[string]int `json:"sends"`
	Suppressed map[string]int `json:"suppressed"`
	Goals      int            `json:"goals"`
	Exits      map[string]int `json:"exits"`
	Errors     int            `json:"errors"`
	// Sample are people who entered (their main identifier, or the
	// profile id of the backtest's own store).
	Sample    []string  `json:"sample"`
	Actions   []simLine `json:"actions"`
	Truncated bool      `json:"truncated,omitempty"`
}

// parseSpan reads a duration that may be given in days ("7d").
func parseSpan(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%s: want a duration such as 36h or a number of days such as 7d, got %q", field, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: want a duration such as 36h or a number of days such as 7d, got %q", field, s)
	}
	return d, nil
}

// errBadBacktest is a backtest request that cannot run as given; err, when
// set, holds the journey files' errors.
type errBadBacktest struct {
	msg string
	err error
}

func (e *errBadBacktest) Error() string { return e.msg }
func (e *errBadBacktest) Unwrap() error { return e.err }

// backtest runs req against the log of a's store, over the window that
// ends at now.
func (a *app) backtest(ctx context.Context, req backtestRequest, now time.Time) (*backtestResult, error) {
	select {
	case a.backtests <- struct{}{}:
		defer func() { <-a.backtests }()
	default:
		return nil, errBacktestBusy
	}
	ctx, cancel := context.WithTimeoutCause(ctx, a.backtestTime, errBacktestTooLong)
	defer cancel()
	res, err := a.runBacktest(ctx, req, now)
	if errors.Is(context.Cause(ctx), errBacktestTooLong) {
		return nil, &errBadBacktest{msg: errBacktestTooLong.Error(), err: err}
	}
	return res, err
}

var errBacktestTooLong = fmt.Errorf("the backtest ran longer than %s and was stopped; ask for a shorter window (since)", maxBacktestTime)

func (a *app) runBacktest(ctx context.Context, req backtestRequest, now time.Time) (*backtestResult, error) {
	since, err := parseSpan("since", req.Since, 7*24*time.Hour)
	if err != nil {
		return nil, &errBadBacktest{msg: err.Error()}
	}
	until, err := parseSpan("until", req.Until, 7*24*time.Hour)
	if err != nil {
		return nil, &errBadBacktest{msg: err.Error()}
	}
	cfg := *a.cfg
	if len(req.Files) > 0 {
		dir, err := backtestFiles(req.Files)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.Journeys = []string{dir}
	}
	defs, err := compileDefinitions(&cfg)
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		return nil, &errBadBacktest{msg: "backtest refused: the journey files do not load", err: err}
	} else if err != nil {
		return nil, err
	}
	res := &backtestResult{From: now.Add(-since).UTC(), To: now.UTC(), Sends: map[string]int{}, Suppressed: map[string]int{}, Exits: map[string]int{}}
	for _, j := range defs.journeys.Journeys {
		res.Journeys = append(res.Journeys, j.ID)
	}
	var events []*profiles.Event
	history := a.store.History
	if a.history != nil {
		history = a.history
	}
	res.Skipped, err = history(ctx, res.From, func(e *profiles.Event) error {
		if len(events) == maxBacktestEvents {
			return &errBadBacktest{msg: fmt.Sprintf("since: more than %d events in the window; ask for a shorter one", maxBacktestEvents)}
		}
		events = append(events, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The log is in the order events arrived; the journeys see them by
	// their own time, as simulate does.
	slices.SortStableFunc(events, func(x, y *profiles.Event) int { return x.Timestamp.Compare(y.Timestamp) })
	res.Events = len(events)
	sources, err := profiles.NewSources(cfg.Sources)
	if err != nil {
		return nil, err
	}
	people := map[string]bool{}
	res.Errors, err = replay(ctx, &cfg, defs, sources, events, until, func(l simLine) {
		res.count(l, people)
		if len(res.Actions) < cmp.Or(req.maxActions, maxBacktestActions) {
			res.Actions = append(res.Actions, l)
		} else {
			res.Truncated = true
		}
	})
	if err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	res.People = len(people)
	if res.Actions == nil {
		res.Actions = []simLine{}
	}
	return res, nil
}

// count adds an action line to the summary.
func (r *backtestResult) count(l simLine, people map[string]bool) {
	reason := func() string {
		var r string
		switch d := l.Detail.(type) {
		case journeys.SuppressedDetail:
			r = d.Reason
		case journeys.ExitDetail:
			r = d.Reason
		case ConversionDetail:
			r = d.Reason
		}
		if r == "" {
			return "unknown"
		}
		return r
	}
	switch l.Action {
	case journeys.ActEnter:
		r.Entered++
		if !people[l.Profile] {
			people[l.Profile] = true
			if len(r.Sample) < maxBacktestSample {
				who := l.Person
				if who == "" {
					who = l.Profile
				}
				r.Sample = append(r.Sample, who)
			}
		}
	case journeys.ActSend:
		r.Sends[l.Channel]++
	case journeys.ActSuppressed:
		r.Suppressed[reason()]++
	case journeys.ActGoal:
		r.Goals++
	case journeys.ActExit:
		r.Exits[reason()]++
	}
}

// backtestFiles writes the given journey files into a new folder.
func backtestFiles(files map[string]string) (string, error) {
	if len(files) > maxBacktestFiles {
		return "", &errBadBacktest{msg: fmt.Sprintf("files: at most %d journey files, got %d", maxBacktestFiles, len(files))}
	}
	dir, err := os.MkdirTemp("", "cartera-backtest-")
	if err != nil {
		return "", err
	}
	for name, body := range files {
		base := filepath.Base(name)
		switch {
		case base != name || strings.HasPrefix(base, ".") || (!strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".yml")):
			os.RemoveAll(dir)
			return "", &errBadBacktest{msg: fmt.Sprintf("files: %q: want a plain file name ending in .yaml", name)}
		case len(body) > maxBacktestFile:
			os.RemoveAll(dir)
			return "", &errBadBacktest{msg: fmt.Sprintf("files: %s: %d bytes, the most is %d", name, len(body), maxBacktestFile)}
		}
		if err := os.WriteFile(filepath.Join(dir, base), []byte(body), 0o600); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// backtestError says why a backtest was refused, with each file error
// (named by the file name given, not the folder it was written to).
func backtestError(err error) (msg string, details []string, ok bool) {
	var bad *errBadBacktest
	if !errors.As(err, &bad) {
		return "", nil, false
	}
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		for _, e := range fe {
			m := e.Error()
			if i := strings.Index(m, "cartera-backtest-"); i >= 0 {
				if j := strings.IndexByte(m[i:], '/'); j >= 0 {
					m = m[i+j+1:]
				}
			}
			details = append(details, m)
		}
	}
	return bad.msg, details, true
}

// backtestJourneys is POST /v1/journeys/backtest: a backtestRequest in,
// the backtestResult out; 400 for a request that cannot run, with each
// journey file error.
func (a *api) backtestJourneys(c *fiber.Ctx) error {
	var req backtestRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return &httpError{fiber.StatusBadRequest, "body: want {\"files\": {\"name.yaml\": \"...\"}, \"since\": \"7d\", \"until\": \"7d\"}: " + err.Error()}
	}
	if n := c.QueryInt("actions"); n > 0 {
		req.maxActions = min(n, maxBacktestActions)
	}
	res, err := a.core.backtest(c.UserContext(), req, a.now())
	if msg, details, ok := backtestError(err); ok {
		body := fiber.Map{"success": false, "error": msg}
		if len(details) > 0 {
			body["errors"] = details
		}
		return c.Status(fiber.StatusBadRequest).JSON(body)
	}
	if errors.Is(err, profiles.ErrNoHistory) {
		return &httpError{fiber.StatusConflict, err.Error()}
	}
	if errors.Is(err, errBacktestBusy) {
		c.Set(fiber.HeaderRetryAfter, "10")
		return &httpError{fiber.StatusTooManyRequests, err.Error()}
	}
	if err != nil {
		return err
	}
	return c.JSON(res)
}
