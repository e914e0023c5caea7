package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"cartera/profiles"
)

// simLine is one line of simulate's output, in the contract's shape.
type simLine struct {
	At      string `json:"at"`
	Profile string `json:"profile"`
	// Person is the profile's main identifier when the action was taken
	// (user id, else email, else anonymous id), for a reader.
	Person  string `json:"person,omitempty"`
	Journey string `json:"journey"`
	Step    string `json:"step"`
	Action  string `json:"action"`
	Channel string `json:"channel"`
	// Detail is a journeys.Detail, or a ConversionDetail.
	Detail any `json:"detail"`
}

// virtualClock is simulate's time, moved by the events and the timers.
type virtualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *virtualClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
}

// simulate replays NDJSON events through the same engines serve runs, on a
// temporary store with a virtual clock, and prints every action.
func (m *Main) simulate(ctx context.Context, args []string) error {
	fset := newCommandFlags("simulate")
	configPath := fset.String("config", "", "YAML config (default examples/cartera.yaml when present)")
	journeysDir := fset.String("journeys", "", "folder of journey files (default: the config's)")
	eventsPath := fset.String("events", "", "NDJSON file of Segment events, one a line (- for stdin)")
	until := fset.Duration("until", 7*24*time.Hour, "how long after the last event timers still fire")
	strict := fset.Bool("strict", false, "exit 1 when a journey condition or value failed to evaluate (an error action)")
	people := fset.Bool("people", false, "print one line per person (the journeys they went through) instead of one per action")
	fromStore := fset.Bool("from-store", false, "replay the events the running gateway's event log holds (a backtest) instead of --events")
	since := fset.String("since", "7d", "with --from-store: how far back (36h, 7d)")
	url := fset.String("url", "", "with --from-store: the gateway's base URL (default: http:// and the config's addr); the admin token is CARTERA_ADMIN_TOKEN or the config's")
	if err := fset.parse(m, args, false); err != nil {
		return err
	}
	switch {
	case *fromStore && *eventsPath != "":
		return &usageError{"simulate: --events and --from-store: give one"}
	case !*fromStore && *eventsPath == "":
		return &usageError{"simulate: --events is required (or --from-store, for a backtest over the gateway's event log)"}
	}
	cfg, err := loadConfig(fset.visited(&serveFlags{config: *configPath, journeys: *journeysDir}), m.Getenv)
	if err != nil {
		return err
	}
	if *fromStore {
		return m.backtest(ctx, cfg, backtestCLI{journeys: *journeysDir, since: *since, until: *until, url: *url, people: *people, strict: *strict})
	}
	sources, err := profiles.NewSources(cfg.Sources)
	if err != nil {
		return err
	}
	events, err := readEvents(*eventsPath, m, sources)
	if err != nil {
		return err
	}
	defs, err := compileDefinitions(cfg)
	if err != nil {
		return m.reportFileErrors(err)
	}
	out := json.NewEncoder(m.Stdout)
	var werr error
	byPerson := &peopleReport{}
	evalErrors, err := replay(ctx, cfg, defs, sources, events, *until, func(line simLine) {
		if *people {
			byPerson.add(line)
			return
		}
		if werr == nil {
			werr = out.Encode(line)
		}
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if *people {
		if err := byPerson.write(out); err != nil {
			return err
		}
	}
	if *strict && evalErrors > 0 {
		return fmt.Errorf("simulate --strict: %d journey condition(s) failed to evaluate (the error actions above)", evalErrors)
	}
	return nil
}

// readEvents decodes NDJSON events (Segment's format, each with a type; an
// optional "source" names the source) and orders them by timestamp. An
// event of a source the config names is checked against its trust as
// serve checks it (server-only events, identity verification); events of
// other sources (the default "simulate") are taken as they are.
func readEvents(path string, m *Main, sources *profiles.Sources) ([]*profiles.Event, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		defer fh.Close()
		r = fh
	}
	var events []*profiles.Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), profiles.MaxEventBytes+1)
	line, n := 0, 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		var meta struct {
			Source string `json:"source"`
		}
		_ = json.Unmarshal(b, &meta)
		if meta.Source == "" {
			meta.Source = "simulate"
		}
		n++
		e, err := profiles.Decode(b, profiles.DecodeOptions{Source: meta.Source, NewID: func() string { return fmt.Sprintf("sim-%d", n) }})
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if e.OriginalTimestamp.IsZero() {
			return nil, fmt.Errorf("%s:%d: timestamp: required (it drives the virtual clock)", path, line)
		}
		// A source the config does not name (the default "simulate") is
		// the marketer's own test data: taken as is.
		if slices.Contains(sources.Names(), meta.Source) {
			if err := sources.CheckTrust(meta.Source, false, []*profiles.Event{e}); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("simulate: read %s: %w", path, err)
	}
	slices.SortStableFunc(events, func(a, b *profiles.Event) int { return a.Timestamp.Compare(b.Timestamp) })
	return events, nil
}

// reportFileErrors prints file errors one a line and returns errReported.
func (m *Main) reportFileErrors(err error) error {
	var fe interface{ Error() string }
	if errors.As(err, &fe) {
		fmt.Fprintln(m.Stderr, err.Error())
		return errReported
	}
	return err
}
