package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cartera/cmd/cartera/console"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
)

// openConsole sets up the web console on the admin API's accessors; nil
// when the config has no console users (the pages then say how to add one).
func openConsole(a *api, cfg *Config, reg prometheus.Gatherer, log *slog.Logger) (*console.Console, error) {
	b := consoleBackend{a: a}
	o := console.Options{DB: a.store.DB(), People: b, Journeys: b, Audiences: a.rules, Metrics: reg, Kinds: consoleKinds(cfg), Now: a.now, Log: log.With("component", "console"),
		Backtest: b, EventLog: a.store}
	if a.core != nil {
		o.AdAudiences = b
	}
	if a.core != nil && a.core.delivery != nil {
		o.Outbox = a.core.delivery.outbox
		o.AdDestinations = maps.Clone(a.core.delivery.audiences)
	}
	if a.core != nil && a.core.wallet != nil {
		o.Wallet = a.core.wallet
	}
	return console.New(consoleConfig(cfg), o)
}

// consoleConfig is the console's config, its cookies Secure when the
// gateway is served over HTTPS.
func consoleConfig(cfg *Config) console.Config {
	ccfg := cfg.Console
	if u, err := url.Parse(cfg.PublicURL); err == nil && u.Scheme == "https" {
		ccfg.Secure = true
	}
	return ccfg
}

// consoleKinds are the identifier kinds people can be looked up by.
func consoleKinds(cfg *Config) []string {
	kinds := []string{profiles.KindEmail, profiles.KindPhone, profiles.KindUserID, profiles.KindAnonymousID, profiles.KindProfileID}
	for _, k := range cfg.Profiles.Identity.Kinds {
		kinds = append(kinds, k.Name)
	}
	return kinds
}

// personHistory is how many journey history entries a person's page shows.
const personHistory = 60

// consoleBackend gives the console the admin API's views.
type consoleBackend struct{ a *api }

func (b consoleBackend) Person(id profiles.Identifier, events int) (*console.Person, error) {
	p, err := b.a.store.Lookup(id)
	if err != nil {
		return nil, err
	}
	var evs []profiles.Event
	if events > 0 {
		if evs, err = b.a.store.Events(p.ID, events); err != nil {
			return nil, err
		}
	}
	v, err := b.a.profileView(p, evs)
	if err != nil {
		return nil, err
	}
	out := &console.Person{ID: v.ID, CreatedAt: v.CreatedAt, LastSeenAt: v.LastSeenAt, Identities: v.Identities,
		Traits: v.Traits, Computed: v.Computed, Consent: v.Consent, ConsentHistory: v.ConsentHistory,
		Journeys: v.Journeys, Merges: v.Merges, EventCount: v.EventCount, Events: v.Events}
	if b.a.core != nil {
		if out.History, err = b.a.core.journeys.History(p.ID, personHistory); err != nil {
			return nil, err
		}
	}
	for _, m := range v.Audiences {
		out.Audiences = append(out.Audiences, console.Membership{Audience: m.ID, Membership: m.Membership})
	}
	if b.a.core != nil && b.a.core.wallet != nil {
		if out.Passes, err = b.a.core.wallet.Cards(p.ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (b consoleBackend) Search(kind, prefix string, limit int) ([]profiles.IdentityMatch, error) {
	return b.a.store.SearchPrefix(kind, prefix, limit)
}

// Export is the body of GET /v1/profiles/{id}/export.
func (b consoleBackend) Export(id profiles.Identifier) ([]byte, error) {
	ex, err := b.a.store.Export(id)
	if err != nil {
		return nil, err
	}
	v, err := b.a.profileView(ex.Profile, ex.Events)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(map[string]any{"exported_at": b.a.now().UTC(), "profile": v}, "", "  ")
}

// Erase is DELETE /v1/profiles/{id} (without drop_later).
func (b consoleBackend) Erase(ctx context.Context, id profiles.Identifier) error {
	_, err := b.a.core.erase(ctx, id, false)
	return err
}

func (b consoleBackend) journey(j *journeys.Journey, steps bool) (console.Journey, error) {
	s, counts, err := b.a.summary(j)
	if err != nil {
		return console.Journey{}, err
	}
	out := console.Journey{ID: s.ID, Name: s.Name, Version: s.Version, Category: s.Category, Trigger: s.Trigger, File: s.File,
		Entered: s.Entered, Waiting: s.Waiting, Converted: s.Converted}
	if steps {
		out.Source = string(j.Source)
		for _, st := range j.Steps {
			sc := journeys.StepCounts{}
			maps.Copy(sc, counts[st.ID])
			out.Steps = append(out.Steps, console.Step{ID: st.ID, Kind: st.Kind, Next: st.Next, Summary: st.Summary(), Edges: st.Edges(), Counts: sc})
		}
	}
	return out, nil
}

func (b consoleBackend) Journeys() ([]console.Journey, error) {
	var out []console.Journey
	for _, j := range b.a.core.journeys.Set().Journeys {
		v, err := b.journey(j, false)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (b consoleBackend) Journey(id string) (*console.Journey, error) {
	j := b.a.core.journeys.Set().Journey(id)
	if j == nil {
		return nil, nil
	}
	v, err := b.journey(j, true)
	return &v, err
}

func (b consoleBackend) Period(id string, from, to time.Time) (map[string]journeys.StepCounts, error) {
	return b.a.core.journeys.Period(id, from, to)
}

// Reload is POST /v1/journeys/reload (?dry_run=true).
func (b consoleBackend) Reload(ctx context.Context, dryRun bool) (*console.ReloadResult, error) {
	return consoleReload(b.a.core.reloadOrCheck(ctx, dryRun))
}

// consoleReload is a reload's result as the console shows it: the files'
// mistakes, or the versions in force and the files that changed.
func consoleReload(res *reloadResult, err error) (*console.ReloadResult, error) {
	var fe rules.FileErrors
	var he *httpError
	switch {
	case errors.As(err, &fe):
		msgs := make([]string, len(fe))
		for i, e := range fe {
			msgs[i] = e.Error()
		}
		return &console.ReloadResult{Errors: msgs}, nil
	case errors.As(err, &he):
		return &console.ReloadResult{Errors: []string{he.msg}}, nil
	case err != nil:
		return nil, err
	}
	out := &console.ReloadResult{Versions: map[string]string{}, Changes: res.changes}
	for _, v := range res.versions {
		out.Versions[v.ID] = v.Version
	}
	return out, nil
}

// Backtest is POST /v1/journeys/backtest.
func (b consoleBackend) Backtest(ctx context.Context, files map[string]string, since string) (*console.Backtest, []string, error) {
	res, err := b.a.core.backtest(ctx, backtestRequest{Files: files, Since: since}, b.a.now())
	if errors.Is(err, errBacktestBusy) {
		return nil, []string{err.Error()}, nil
	}
	if msg, details, ok := backtestError(err); ok {
		if len(details) == 0 {
			details = []string{msg}
		}
		return nil, details, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return consoleBacktest(res), nil, nil
}

// consoleBacktest is a backtest as the console's page shows it.
func consoleBacktest(res *backtestResult) *console.Backtest {
	out := &console.Backtest{From: res.From, To: res.To, Journeys: res.Journeys, Events: res.Events, Skipped: res.Skipped,
		Entered: res.Entered, People: res.People, Goals: res.Goals, Errors: res.Errors, Sends: res.Sends,
		Suppressed: res.Suppressed, Exits: res.Exits, Sample: res.Sample, Truncated: res.Truncated}
	for _, l := range res.Actions {
		detail, _ := json.Marshal(l.Detail)
		out.Actions = append(out.Actions, console.BacktestAction{At: l.At, Person: l.Person, Journey: l.Journey, Step: l.Step,
			Action: l.Action, Channel: l.Channel, Detail: string(detail)})
	}
	return out
}
