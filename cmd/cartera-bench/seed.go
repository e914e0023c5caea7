package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
)

// seedFile is the part of a gateway config the seeder needs.
type seedFile struct {
	Profiles profiles.Config `yaml:"profiles"`
	Rules    []string        `yaml:"rules"`
	Policies string          `yaml:"policies"`
	Journeys string          `yaml:"journeys"`
}

// seed fills a store with people as the load generator names them
// (u-N, a-N, Person.N@Example.com): an identify and an order each,
// through the same ingestion, rules and journeys as serve, in big
// transactions without fsync (the file is synced once at the end).
func seed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "bbolt file to create or extend (required)")
	config := fs.String("config", "cmd/cartera-bench/testdata/cartera.yaml", "gateway config: identity settings, rules, policies and journeys")
	count := fs.Int("profiles", 1_000_000, "people to create")
	from := fs.Int("from", 0, "number of the first person")
	batch := fs.Int("batch", 5000, "people per transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return fmt.Errorf("--data is required")
	}
	raw, err := os.ReadFile(*config)
	if err != nil {
		return err
	}
	cf := seedFile{Profiles: profiles.DefaultConfig()}
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		return fmt.Errorf("%s: %w", *config, err)
	}
	dir := filepath.Dir(*config)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var ruleFiles []string
	for _, f := range cf.Rules {
		ruleFiles = append(ruleFiles, rel(f))
	}
	rs, err := rules.Load(rules.EnvOptions{}, ruleFiles...)
	if err != nil {
		return err
	}
	pol := journeys.DefaultPolicy()
	if cf.Policies != "" {
		if pol, err = journeys.ReadPolicy(rel(cf.Policies), rs.Env); err != nil {
			return err
		}
	}
	known := journeys.Known{AdAudiences: pol.AdAudienceNames()}
	for _, a := range rs.Audiences {
		known.Audiences = append(known.Audiences, a.Name())
	}
	var js []*journeys.Journey
	if cf.Journeys != "" {
		if js, err = journeys.LoadDir(rel(cf.Journeys), rs.Env, known); err != nil {
			return err
		}
	}
	for _, j := range js {
		rs.Require(j.EventCounts()...)
	}
	for _, s := range pol.Suppress {
		rs.Require(s.When.EventCounts()...)
	}
	set, err := journeys.NewSet(js, pol)
	if err != nil {
		return err
	}

	pcfg := cf.Profiles
	pcfg.NoSync = true
	pcfg.MaxBatchEvents = max(pcfg.MaxBatchEvents, 2**batch)
	start := time.Now()
	st, err := profiles.Open(ctx, *data, pcfg, profiles.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	re, err := rules.NewEngine(st.DB(), rs, rules.EngineOptions{})
	if err != nil {
		return err
	}
	je, err := journeys.New(st.DB(), set, journeys.Options{Rules: re, Env: func() *rules.Env { return rs.Env }, Known: func() journeys.Known { return known }})
	if err != nil {
		return err
	}
	st.Use(re, je)

	now := time.Now().UTC()
	events := make([]*profiles.Event, 0, 2**batch)
	for p := *from; p < *from+*count; p++ {
		n := strconv.Itoa(p)
		ts := now.Add(-time.Duration(*from+*count-p) * time.Millisecond)
		events = append(events,
			&profiles.Event{Type: profiles.TypeIdentify, MessageID: "seed-i-" + n, UserID: "u-" + n, AnonymousID: "a-" + n,
				Traits: map[string]any{"email": "Person." + n + "@Example.com", "first_name": "Ana", "plan": "member",
					"consent": map[string]any{"email": p%4 != 0, "ads": p%3 != 0}},
				Timestamp: ts, ReceivedAt: ts, Source: "web"},
			&profiles.Event{Type: profiles.TypeTrack, MessageID: "seed-o-" + n, UserID: "u-" + n, Event: "Order Completed",
				Properties: map[string]any{"order_id": "seed-" + n, "revenue": json.Number("59.90"), "currency": "EUR", "channel": "web"},
				Timestamp:  ts, ReceivedAt: ts, Source: "web"})
		if len(events) == cap(events) || p == *from+*count-1 {
			if _, err := st.Ingest(ctx, events); err != nil {
				return err
			}
			events = events[:0]
			if done := p + 1 - *from; done%100_000 < *batch {
				fmt.Fprintf(stderr, "seeded %d people in %s\n", done, time.Since(start).Round(time.Second))
			}
		}
	}
	// Record the rules' definitions as backfilled (every profile was
	// evaluated with them as it was made), so serve does not redo it.
	if err := re.Backfill(ctx, st); err != nil {
		return err
	}
	if err := st.DB().Sync(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d people (%d profiles in the store) in %s\n", *count, st.ProfileCount(), time.Since(start).Round(time.Millisecond))
	return nil
}
