package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cartera/journeys"
)

// backtestCLI is what `simulate --from-store` was given.
type backtestCLI struct {
	// journeys is a journey file or folder to run instead of those in
	// force ("": those in force).
	journeys       string
	since, url     string
	until          time.Duration
	people, strict bool
}

// backtest is `simulate --from-store`: it asks the running gateway for a
// backtest (POST /v1/journeys/backtest: its event log, its store's
// erasures) and prints the actions as simulate does, with the summary on
// stderr.
func (m *Main) backtest(ctx context.Context, cfg *Config, o backtestCLI) error {
	req := backtestRequest{Since: o.since, Until: o.until.String()}
	if o.journeys != "" {
		files, err := readJourneyFiles(o.journeys)
		if err != nil {
			return err
		}
		req.Files = files
	}
	base := o.url
	if base == "" {
		base = "http://" + cfg.Addr
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/journeys/backtest", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("simulate --from-store: --url: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return fmt.Errorf("simulate --from-store: ask the gateway at %s: %w", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("simulate --from-store: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error  string   `json:"error"`
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return fmt.Errorf("simulate --from-store: the gateway answered %s", resp.Status)
		}
		for _, line := range e.Errors {
			fmt.Fprintln(m.Stderr, line)
		}
		return fmt.Errorf("simulate --from-store: %s", e.Error)
	}
	var res backtestResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("simulate --from-store: decode the answer: %w", err)
	}
	out := json.NewEncoder(m.Stdout)
	byPerson := &peopleReport{}
	for _, l := range res.Actions {
		if o.people {
			byPerson.add(l)
		} else if err := out.Encode(l); err != nil {
			return err
		}
	}
	if o.people {
		if err := byPerson.write(out); err != nil {
			return err
		}
	}
	fmt.Fprintf(m.Stderr, "backtest of %s over %s to %s: %d events (%d skipped: erased since, or unreadable); %d entered (%d people), sends %v, suppressed %v, %d goals, exits %v\n",
		strings.Join(res.Journeys, ", "), res.From.Format(time.RFC3339), res.To.Format(time.RFC3339), res.Events, res.Skipped,
		res.Entered, res.People, res.Sends, res.Suppressed, res.Goals, res.Exits)
	if res.Truncated {
		fmt.Fprintf(m.Stderr, "only the first %d actions are listed; the counts above are of all\n", len(res.Actions))
	}
	if o.strict && res.Errors > 0 {
		return fmt.Errorf("simulate --strict: %d journey condition(s) failed to evaluate (the error actions above)", res.Errors)
	}
	return nil
}

// readJourneyFiles reads a journey file, or the journey files of a folder,
// for a backtest request.
func readJourneyFiles(path string) (map[string]string, error) {
	paths := []string{path}
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("simulate --from-store: --journeys: %w", err)
	} else if fi.IsDir() {
		if paths, err = journeys.Files([]string{path}); err != nil {
			return nil, err
		}
	}
	files := map[string]string{}
	for _, p := range slices.Sorted(slices.Values(paths)) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("simulate --from-store: %w", err)
		}
		name := filepath.Base(p)
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("simulate --from-store: two journey files named %s", name)
		}
		files[name] = string(b)
	}
	return files, nil
}
