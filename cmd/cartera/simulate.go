package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"cartera/journeys"
	"cartera/profiles"
)

// simLine is one line of simulate's output, in the contract's shape.
type simLine struct {
	At      string `json:"at"`
	Profile string `json:"profile"`
	// Person is the profile's main identifier when the action was taken
	// (user id, else email, else anonymous id), for a reader.
	Person  string          `json:"person,omitempty"`
	Journey string          `json:"journey"`
	Step    string          `json:"step"`
	Action  string          `json:"action"`
	Channel string          `json:"channel"`
	Detail  journeys.Detail `json:"detail"`
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
	if err := fset.parse(m, args, false); err != nil {
		return err
	}
	if *eventsPath == "" {
		return &usageError{"simulate: --events is required"}
	}
	cfg, err := loadConfig(fset.visited(&serveFlags{config: *configPath, journeys: *journeysDir}), m.Getenv)
	if err != nil {
		return err
	}
	events, err := readEvents(*eventsPath, m)
	if err != nil {
		return err
	}
	defs, err := compileDefinitions(cfg)
	if err != nil {
		return m.reportFileErrors(err)
	}
	dir, err := os.MkdirTemp("", "cartera-simulate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Data = filepath.Join(dir, "simulate.db")

	clock := &virtualClock{}
	if len(events) > 0 {
		clock.now = events[0].Timestamp
	}
	// Seeded sources make profile ids and adaptive splits' draws, and so
	// the output, the same on every run.
	seeded := rand.NewChaCha8([32]byte{'c', 'a', 'r', 't', 'e', 'r', 'a'})
	core, err := openApp(ctx, cfg, defs, appOptions{Now: clock.Now, Rand: seeded, Draws: rand.NewPCG(1, 2), NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer core.close()

	out := json.NewEncoder(m.Stdout)
	var werr error
	evalErrors := 0
	byPerson := &peopleReport{}
	core.journeys.Observe(func(actions []journeys.Action) {
		for _, a := range actions {
			if a.Action == journeys.ActError {
				evalErrors++
			}
			line := simLine{At: a.At.UTC().Format(time.RFC3339), Profile: a.Profile, Person: mainIdentifier(core.store, a.Profile),
				Journey: a.Journey, Step: a.Step, Action: a.Action, Channel: a.Channel, Detail: a.Detail}
			if *people {
				byPerson.add(line)
				continue
			}
			if werr == nil {
				werr = out.Encode(line)
			}
		}
	})
	// No real sends: set_trait is applied (it changes what later
	// conditions see), everything else is dropped once printed.
	deliver := func(ctx context.Context, a journeys.Action) error {
		_, err := journeys.ApplyTraits(ctx, core.store, a, clock.Now())
		return err
	}
	// drain delivers everything pending, however many actions a step (a
	// cron tick over a large audience) left.
	drain := func() error {
		for {
			n, err := core.journeys.DrainOutbox(ctx, deliver, 1000)
			if err != nil || n < 1000 {
				return err
			}
		}
	}
	fireUntil := func(t time.Time) error {
		for {
			due, ok := core.journeys.NextDue()
			if !ok || due.After(t) {
				return nil
			}
			clock.set(due)
			if _, err := core.journeys.FireDue(ctx, core.store, due, 1); err != nil {
				return err
			}
			if err := drain(); err != nil {
				return err
			}
		}
	}
	var last time.Time
	for _, e := range events {
		if err := fireUntil(e.Timestamp); err != nil {
			return err
		}
		clock.set(e.Timestamp)
		e.ReceivedAt = clock.Now()
		if _, err := core.store.Ingest(ctx, []*profiles.Event{e}); err != nil {
			return fmt.Errorf("simulate: event %s: %w", e.MessageID, err)
		}
		if err := drain(); err != nil {
			return err
		}
		last = e.Timestamp
	}
	if err := fireUntil(last.Add(*until)); err != nil {
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
// optional "source" names the source) and orders them by timestamp.
func readEvents(path string, m *Main) ([]*profiles.Event, error) {
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
