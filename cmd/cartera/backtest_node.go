package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/cmd/cartera/console"
	"cartera/profiles/jetstream"
)

// A backtest on a cluster node: every partition's holder backtests the
// events of its partition that the stream still holds (a person's
// journeys are theirs alone, and a person is in one partition), each
// listing its share of the actions, and the results are added up. A
// refusal (files that do not load, a window too long, a backtest already
// running) is every partition's: the first is the answer.

// backtestsAtOnce is how many partitions backtest at once across the
// cluster. A backtest takes a core's CPU for as long as its partition's
// history replays: 16 at once (as reads are asked) starved the nodes'
// lease renewals under the race detector, and the partitions moved.
const backtestsAtOnce = 2

// errRefusedBacktest is a partition's refusal of a backtest: its status
// and body, as serve answers them.
type errRefusedBacktest struct {
	status int
	header map[string]string
	body   []byte
}

func (e *errRefusedBacktest) Error() string {
	var b struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(e.body, &b) == nil && b.Error != "" {
		return b.Error
	}
	return fmt.Sprintf("the backtest was refused (%d)", e.status)
}

// backtestCluster runs the backtest body asks for (a backtestRequest) on
// every partition's holder, with the Authorization header auth.
func backtestCluster(ctx context.Context, l *jetstream.Log, auth string, body []byte) (*backtestResult, error) {
	share := max(maxBacktestActions/l.Partitions(), 1)
	req := encodeRequest(forwardedRequest{Method: fiber.MethodPost, URI: "/v1/journeys/backtest?actions=" + strconv.Itoa(share),
		Header: map[string]string{fiber.HeaderAuthorization: auth, fiber.HeaderContentType: fiber.MIMEApplicationJSON}, Body: body})
	if len(req) > l.MaxRequest() {
		return nil, &httpError{fiber.StatusRequestEntityTooLarge, fmt.Sprintf("the request is larger than the cluster's NATS max_payload (%d bytes)", l.MaxRequest())}
	}
	ctx, cancel := context.WithTimeout(ctx, maxBacktestTime+time.Minute)
	defer cancel()
	answers, errs := askEveryPartition(ctx, l, req, backtestsAtOnce)
	for _, err := range errs {
		if errors.Is(err, jetstream.ErrNoHolder) {
			return nil, errPartitionBusy
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	parts := make([]backtestResult, len(answers))
	for p, ans := range answers {
		if ans.Status != fiber.StatusOK {
			return nil, &errRefusedBacktest{status: ans.Status, header: ans.Header, body: ans.Body}
		}
		if err := json.Unmarshal(ans.Body, &parts[p]); err != nil {
			return nil, fmt.Errorf("decode partition %d's backtest: %w", p, err)
		}
	}
	return mergeBacktests(parts), nil
}

// backtestAcross is POST /v1/journeys/backtest on a cluster node.
func (a *api) backtestAcross(c *fiber.Ctx) error {
	res, err := backtestCluster(c.UserContext(), a.people.log, c.Get(fiber.HeaderAuthorization), c.Body())
	var refused *errRefusedBacktest
	if errors.As(err, &refused) {
		for k, v := range refused.header {
			c.Set(k, v)
		}
		return c.Status(refused.status).Send(refused.body)
	}
	if errors.Is(err, errPartitionBusy) {
		c.Set(fiber.HeaderRetryAfter, "1")
	}
	if err != nil {
		return err
	}
	return c.JSON(res)
}

// Backtest implements console.Backtester over every partition.
func (nc nodeConsole) Backtest(ctx context.Context, files map[string]string, since string) (*console.Backtest, []string, error) {
	body, err := json.Marshal(backtestRequest{Files: files, Since: since})
	if err != nil {
		return nil, nil, err
	}
	res, err := backtestCluster(ctx, nc.log, nc.auth, body)
	var refused *errRefusedBacktest
	if errors.As(err, &refused) {
		var b struct {
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(refused.body, &b) == nil && len(b.Errors) > 0 {
			return nil, b.Errors, nil
		}
		return nil, []string{refused.Error()}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return consoleBacktest(res), nil, nil
}

// mergeBacktests adds up the backtests of the partitions: their counts,
// their samples (up to maxBacktestSample) and their actions, in time
// order.
func mergeBacktests(parts []backtestResult) *backtestResult {
	out := &backtestResult{Sends: map[string]int{}, Suppressed: map[string]int{}, Exits: map[string]int{}, Sample: []string{}, Actions: []simLine{}}
	add := func(dst, src map[string]int) {
		for k, n := range src {
			dst[k] += n
		}
	}
	for i, r := range parts {
		if i == 0 {
			out.From, out.To, out.Journeys = r.From, r.To, r.Journeys
		}
		out.Events += r.Events
		out.Skipped += r.Skipped
		out.Entered += r.Entered
		out.People += r.People
		out.Goals += r.Goals
		out.Errors += r.Errors
		add(out.Sends, r.Sends)
		add(out.Suppressed, r.Suppressed)
		add(out.Exits, r.Exits)
		out.Sample = append(out.Sample, r.Sample[:min(len(r.Sample), maxBacktestSample-len(out.Sample))]...)
		out.Actions = append(out.Actions, r.Actions...)
		out.Truncated = out.Truncated || r.Truncated
	}
	slices.SortStableFunc(out.Actions, func(x, y simLine) int { return compareTimes(x.At, y.At) })
	return out
}

// compareTimes orders two RFC 3339 times (as text, when one does not
// parse).
func compareTimes(x, y string) int {
	tx, ex := time.Parse(time.RFC3339Nano, x)
	ty, ey := time.Parse(time.RFC3339Nano, y)
	if ex != nil || ey != nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return tx.Compare(ty)
}
