package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"cartera/journeys"
	"cartera/profiles"
)

// replay runs events through a fresh store in a temporary folder with the
// definitions, on a virtual clock moved by the events and the timers, and
// hands emit every action the journeys take (and the conversions the
// config sends back) as simulate prints them. Timers fire up to until
// past the last event. Nothing is delivered: set_trait is applied,
// everything else is only reported. It returns how many journey
// conditions failed to evaluate (error actions). simulate and the
// backtest both run it.
func replay(ctx context.Context, cfg *Config, defs *definitions, sources *profiles.Sources, events []*profiles.Event, until time.Duration, emit func(simLine)) (int, error) {
	dir, err := os.MkdirTemp("", "cartera-simulate-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	c := *cfg
	cfg = &c
	cfg.Data = filepath.Join(dir, "simulate.db")

	clock := &virtualClock{}
	if len(events) > 0 {
		clock.now = events[0].Timestamp
	}
	// Seeded sources make profile ids and adaptive splits' draws, and so
	// the output, the same on every run.
	seeded := rand.NewChaCha8([32]byte{'c', 'a', 'r', 't', 'e', 'r', 'a'})
	core, err := openApp(ctx, cfg, defs, appOptions{Now: clock.Now, Rand: seeded, Draws: rand.NewPCG(1, 2), NoSync: true, Logger: slog.New(slog.DiscardHandler), Trust: sources})
	if err != nil {
		return 0, err
	}
	defer core.close()

	evalErrors := 0
	core.journeys.Observe(func(actions []journeys.Action) {
		for _, a := range actions {
			if a.Action == journeys.ActError {
				evalErrors++
			}
			emit(simLine{At: a.At.UTC().Format(time.RFC3339), Profile: a.Profile, Person: mainIdentifier(core.store, a.Profile),
				Journey: a.Journey, Step: a.Step, Action: a.Action, Channel: a.Channel, Detail: a.Detail})
		}
	})
	// Sales the config sends back to the ad platforms, after the journeys
	// the same events moved.
	if dests := configuredConversions(cfg); len(dests) > 0 {
		core.store.Use(&simConversions{c: newConversions(core, cfg, dests), sent: map[string]bool{}, emit: emit,
			who: func(id string) string { return mainIdentifier(core.store, id) }})
	}
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
			return evalErrors, err
		}
		clock.set(e.Timestamp)
		e.ReceivedAt = clock.Now()
		if _, err := core.store.Ingest(ctx, []*profiles.Event{e}); err != nil {
			return evalErrors, fmt.Errorf("simulate: event %s: %w", e.MessageID, err)
		}
		if err := drain(); err != nil {
			return evalErrors, err
		}
		last = e.Timestamp
	}
	if err := fireUntil(last.Add(until)); err != nil {
		return evalErrors, err
	}
	return evalErrors, nil
}
