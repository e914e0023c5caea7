package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"cartera/channels/email"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/profiles/jetstream"
	"cartera/rules"
	"cartera/wallet"
)

// Requests about a person on a cluster node (step 3 of docs/cluster.md's
// path): the node that takes the request finds the person's profile in the
// identity index and asks the node that holds its partition, over NATS
// request-reply (jetstream.Log.Ask); that node runs the request through
// its partition core's own routes, as serve on one store would, and the
// answer goes back as it is.

// forwardedRequest is an HTTP request about a person, from the node that
// took it to the holder of the person's partition.
type forwardedRequest struct {
	Method string            `json:"method"`
	URI    string            `json:"uri"`
	Header map[string]string `json:"header,omitempty"`
	Body   []byte            `json:"body,omitempty"`
}

// forwardedAnswer is the holder's answer to a forwardedRequest.
type forwardedAnswer struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header,omitempty"`
	Body   []byte            `json:"body,omitempty"`
}

// The headers that travel each way: what the core's routes read, and what
// their answers set.
var (
	forwardedRequestHeaders = []string{fiber.HeaderAuthorization, fiber.HeaderContentType, fiber.HeaderAccept, fiber.HeaderIfModifiedSince}
	forwardedAnswerHeaders  = []string{fiber.HeaderContentType, fiber.HeaderContentDisposition, fiber.HeaderRetryAfter, fiber.HeaderCacheControl,
		fiber.HeaderLocation, fiber.HeaderLastModified}
)

// forwardedHeaders are the headers of the request a holder's routes read.
func forwardedHeaders(c *fiber.Ctx) map[string]string {
	h := map[string]string{}
	for _, name := range forwardedRequestHeaders {
		if v := c.Get(name); v != "" {
			h[name] = v
		}
	}
	return h
}

// personForwarder sends requests about a person to the node holding them.
type personForwarder struct {
	router *jetstream.Router
	log    *jetstream.Log
	// tracker reads the tracking links' tokens, which name their person.
	tracker *email.Tracker
}

// forward answers a request about the person named by the route's :ident
// with the answer of the node that holds them.
func (a *api) forward(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	pid, err := a.people.router.Lookup(c.UserContext(), id)
	if err != nil {
		return err
	}
	if pid == "" {
		return &httpError{fiber.StatusNotFound, "no profile holds that identifier (the cluster's identity index knows none)"}
	}
	return a.askHolder(c, pid)
}

// forwardByToken answers a tracking link (open, click, unsubscribe) with
// the answer of the node that holds the person its token names (or, merged
// since, the profile they became). A token that does not parse is answered
// by partition 0's holder as any would answer it: the pixel, or the page
// that says the link is unknown.
func (a *api) forwardByToken(c *fiber.Ctx) error {
	p := 0
	if ti, err := a.people.tracker.Parse(c.Params("token")); err == nil {
		pid, err := a.people.router.Lookup(c.UserContext(), profiles.Identifier{Kind: profiles.KindProfileID, Value: ti.ProfileID})
		if err != nil {
			return err
		}
		if pid == "" {
			pid = ti.ProfileID // erased: its holder answers as for anyone erased
		}
		p = a.people.log.ProfilePartition(pid)
	}
	return a.askPartition(c, p)
}

// testTemplateAcross is POST /v1/templates/{name}/test on a node: the
// holder of the person the test takes its data from sends it (partition
// 0's holder when it names none); the body is checked there.
func (a *api) testTemplateAcross(c *fiber.Ctx) error {
	var req testSendRequest
	if json.Unmarshal(c.Body(), &req) != nil || req.Profile == "" {
		return a.askPartition(c, 0)
	}
	id, err := profiles.ParseIdentifier(req.Profile)
	if err != nil {
		return &httpError{fiber.StatusBadRequest, fmt.Sprintf("profile: %v", err)}
	}
	pid, err := a.people.router.Lookup(c.UserContext(), id)
	if err != nil {
		return err
	}
	if pid == "" {
		return &httpError{fiber.StatusNotFound, "profile: no profile holds that identifier"}
	}
	return a.askHolder(c, pid)
}

// askHolder answers the request with the answer of the node holding
// profile pid.
func (a *api) askHolder(c *fiber.Ctx, pid string) error {
	return a.askPartition(c, a.people.log.ProfilePartition(pid))
}

// askPartition answers the request with the answer of partition p's holder.
func (a *api) askPartition(c *fiber.Ctx, p int) error {
	body := encodeRequest(forwardedRequest{Method: c.Method(), URI: c.OriginalURL(), Header: forwardedHeaders(c), Body: c.Body()})
	if len(body) > a.people.log.MaxRequest() {
		return &httpError{fiber.StatusRequestEntityTooLarge, fmt.Sprintf("the request is larger than the cluster's NATS max_payload (%d bytes)", a.people.log.MaxRequest())}
	}
	out, err := a.people.log.Ask(c.UserContext(), p, body)
	if errors.Is(err, jetstream.ErrNoHolder) {
		c.Set(fiber.HeaderRetryAfter, "1")
		return &httpError{fiber.StatusServiceUnavailable, "the person's partition is moving between nodes: retry"}
	}
	if err != nil {
		return err
	}
	var ans forwardedAnswer
	if err := json.Unmarshal(out, &ans); err != nil {
		return fmt.Errorf("decode the answer of partition %d: %w", p, err)
	}
	for k, v := range ans.Header {
		c.Set(k, v)
	}
	return c.Status(ans.Status).Send(ans.Body)
}

// answerer runs forwarded requests through one partition core's routes.
type answerer struct {
	handle fasthttp.RequestHandler
	max    int // the largest answer NATS carries
}

// answer is the holder's side of forward.
func (w answerer) answer(raw []byte) []byte {
	var req forwardedRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return encodeAnswer(forwardedAnswer{Status: fiber.StatusBadRequest, Body: []byte(`{"success":false,"error":"a forwarded request that is not JSON"}`)})
	}
	var r fasthttp.Request
	r.Header.SetMethod(req.Method)
	r.SetRequestURI(req.URI)
	for k, v := range req.Header {
		r.Header.Set(k, v)
	}
	r.SetBody(req.Body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&r, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	w.handle(&ctx)
	ans := forwardedAnswer{Status: ctx.Response.StatusCode(), Header: map[string]string{}, Body: ctx.Response.Body()}
	for _, h := range forwardedAnswerHeaders {
		if v := ctx.Response.Header.Peek(h); len(v) > 0 {
			ans.Header[h] = string(v)
		}
	}
	out := encodeAnswer(ans)
	if len(out) > w.max {
		return encodeAnswer(forwardedAnswer{Status: fiber.StatusBadGateway, Header: map[string]string{fiber.HeaderContentType: fiber.MIMEApplicationJSON},
			Body: []byte(`{"success":false,"error":"the answer (` + strconv.Itoa(len(out)) + ` bytes) is larger than the cluster's NATS max_payload (` + strconv.Itoa(w.max) + ` bytes)"}`)})
	}
	return out
}

// encodeRequest encodes a forwarded request.
func encodeRequest(r forwardedRequest) []byte {
	out, err := json.Marshal(r)
	if err != nil {
		// A struct of strings and bytes always encodes.
		panic(err)
	}
	return out
}

func encodeAnswer(a forwardedAnswer) []byte {
	out, err := json.Marshal(a)
	if err != nil {
		// A struct of strings, bytes and an int always encodes.
		panic(err)
	}
	return out
}

// Requests about everyone (step 4 of docs/cluster.md's path): the node
// asks every partition's holder the same request and adds up their
// answers. A partition nobody holds now fails the whole answer (503 with
// Retry-After): a sum that leaves a partition out would be wrong.

// askAll sends the request to every partition's holder, at most 16 at a
// time, and returns the bodies of their answers, in partition order; any
// answer but 200 is the answer.
func (a *api) askAll(c *fiber.Ctx) ([][]byte, error) {
	answers, err := a.askEach(c, func(int) string { return c.OriginalURL() }, fiber.StatusOK)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(answers))
	for p, ans := range answers {
		out[p] = ans.Body
	}
	return out, nil
}

// askEach sends every partition's holder the request, at the URI uri
// gives for the partition, at most 16 at a time, and returns their
// answers in partition order; an answer whose status is not among ok is
// the answer.
func (a *api) askEach(c *fiber.Ctx, uri func(p int) string, ok ...int) ([]forwardedAnswer, error) {
	header := forwardedHeaders(c)
	l, method := a.people.log, c.Method() // the fiber.Ctx is not for other goroutines
	reqs := make(map[int][]byte, l.Partitions())
	for p := range l.Partitions() {
		reqs[p] = encodeRequest(forwardedRequest{Method: method, URI: uri(p), Header: header})
	}
	out, errs := askPartitions(c.UserContext(), l, reqs)
	for p, ans := range out {
		if errs[p] == nil && !slices.Contains(ok, ans.Status) {
			errs[p] = &httpError{ans.Status, fmt.Sprintf("partition %d answered %d: %s", p, ans.Status, ans.Body)}
		}
	}
	for _, err := range errs {
		if errors.Is(err, jetstream.ErrNoHolder) {
			c.Set(fiber.HeaderRetryAfter, "1")
			return nil, &httpError{fiber.StatusServiceUnavailable, "a partition is moving between nodes: retry"}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// askEveryPartition sends every partition's holder the same request (an
// encoded forwardedRequest), at most n at a time, and returns their
// answers and errors by partition.
func askEveryPartition(ctx context.Context, l *jetstream.Log, req []byte, n int) ([]forwardedAnswer, []error) {
	reqs := make(map[int][]byte, l.Partitions())
	for p := range l.Partitions() {
		reqs[p] = req
	}
	return askPartitionsAtOnce(ctx, l, reqs, n)
}

// askPartitions sends each partition's holder its request of reqs, at
// most askAtOnce at a time, and returns their answers and errors by
// partition (of l.Partitions(), those not asked zero).
func askPartitions(ctx context.Context, l *jetstream.Log, reqs map[int][]byte) ([]forwardedAnswer, []error) {
	return askPartitionsAtOnce(ctx, l, reqs, askAtOnce)
}

// askAtOnce is how many partitions' holders a request across partitions
// asks at once: reads, a page's worth each.
const askAtOnce = 16

// askPartitionsAtOnce is askPartitions, at most n at a time.
func askPartitionsAtOnce(ctx context.Context, l *jetstream.Log, reqs map[int][]byte, n int) ([]forwardedAnswer, []error) {
	out := make([]forwardedAnswer, l.Partitions())
	errs := make([]error, l.Partitions())
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for p, req := range reqs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			raw, err := l.Ask(ctx, p, req)
			if err != nil {
				errs[p] = err
				return
			}
			if err := json.Unmarshal(raw, &out[p]); err != nil {
				errs[p] = fmt.Errorf("decode the answer of partition %d: %w", p, err)
			}
		})
	}
	wg.Wait()
	return out, errs
}

// listJourneysAcross is GET /v1/journeys on a node: each journey's
// counters summed over every partition.
func (a *api) listJourneysAcross(c *fiber.Ctx) error {
	answers, err := a.askAll(c)
	if err != nil {
		return err
	}
	out, err := mergeLists(answers, "journeys", func(j journeySummary) string { return j.ID }, addSummary)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"journeys": out})
}

// listAudiencesAcross is GET /v1/audiences on a node: each audience's
// size summed over every partition.
func (a *api) listAudiencesAcross(c *fiber.Ctx) error {
	answers, err := a.askAll(c)
	if err != nil {
		return err
	}
	out, err := mergeLists(answers, "audiences", func(au rules.AudienceInfo) string { return au.Name }, func(s *rules.AudienceInfo, au rules.AudienceInfo) {
		s.Size += au.Size
	})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"audiences": out})
}

// mergeLists reads the list under key of each partition's answer and
// merges the items of one id (the first partition's order, then those
// only later partitions have) with add.
func mergeLists[T any](answers [][]byte, key string, id func(T) string, add func(into *T, more T)) ([]T, error) {
	parts := make([][]T, len(answers))
	for p, body := range answers {
		var part map[string]json.RawMessage
		if err := json.Unmarshal(body, &part); err != nil {
			return nil, fmt.Errorf("decode the %s of partition %d: %w", key, p, err)
		}
		if err := json.Unmarshal(part[key], &parts[p]); err != nil {
			return nil, fmt.Errorf("decode the %s of partition %d: %w", key, p, err)
		}
	}
	if out := mergeBy(parts, id, add); out != nil {
		return out, nil
	}
	return []T{}, nil
}

// The wallet web service on a node: a pass's serial names its person
// (wallet.SerialProfile: a partition core's serials start with the
// profile id), so requests about a pass go to the node holding them; a
// device's list of updated passes asks every partition.

// forwardBySerial answers a request about the pass named by the route's
// :serial (or :file, <serial>.pkpass) with the answer of the node holding
// its person.
func (a *api) forwardBySerial(c *fiber.Ctx) error {
	serial := pathParam(c, "serial")
	if serial == "" {
		serial, _ = strings.CutSuffix(pathParam(c, "file"), ".pkpass")
	}
	pid := wallet.SerialProfile(serial)
	if pid == "" {
		return &httpError{fiber.StatusNotFound, "no such pass"}
	}
	live, err := a.people.router.Lookup(c.UserContext(), profiles.Identifier{Kind: profiles.KindProfileID, Value: pid})
	if err != nil {
		return err
	}
	if live == "" {
		live = pid // erased: its holder answers as for anyone erased
	}
	return a.askHolder(c, live)
}

// forwardToAny answers a request that needs no person's state (a device's
// log) with partition 0's holder's answer.
func (a *api) forwardToAny(c *fiber.Ctx) error { return a.askPartition(c, 0) }

// updatedPassesAcross is GET /wallet/v1/devices/{device}/registrations/
// {passType} on a node: the serials updated on every partition, and a
// lastUpdated tag that holds each partition's own (their tags count per
// file), "c1:" and partition=tag pairs, which the device sends back as
// passesUpdatedSince and each partition gets its own of. A tag of
// another form counts as none (every pass is listed once more).
func (a *api) updatedPassesAcross(c *fiber.Ctx) error {
	since := map[int]string{}
	if v, ok := strings.CutPrefix(c.Query("passesUpdatedSince"), "c1:"); ok {
		for pair := range strings.SplitSeq(v, ",") {
			p, tag, _ := strings.Cut(pair, "=")
			if n, err := strconv.Atoi(p); err == nil {
				if _, err := strconv.ParseUint(tag, 10, 64); err == nil {
					since[n] = tag
				}
			}
		}
	}
	path := c.Path()
	answers, err := a.askEach(c, func(p int) string {
		if tag := since[p]; tag != "" {
			return path + "?passesUpdatedSince=" + tag
		}
		return path
	}, fiber.StatusOK, fiber.StatusNoContent)
	if err != nil {
		return err
	}
	var serials []string
	tags := make([]string, 0, len(answers))
	for p, ans := range answers {
		tag := since[p]
		if ans.Status == fiber.StatusOK {
			var part struct {
				Serials     []string `json:"serialNumbers"`
				LastUpdated string   `json:"lastUpdated"`
			}
			if err := json.Unmarshal(ans.Body, &part); err != nil {
				return fmt.Errorf("decode the updated passes of partition %d: %w", p, err)
			}
			serials = append(serials, part.Serials...)
			tag = part.LastUpdated
		}
		if tag != "" {
			tags = append(tags, strconv.Itoa(p)+"="+tag)
		}
	}
	if len(serials) == 0 {
		return c.SendStatus(fiber.StatusNoContent)
	}
	return c.JSON(fiber.Map{"serialNumbers": serials, "lastUpdated": "c1:" + strings.Join(tags, ",")})
}

// listOutboxAcross is GET /v1/outbox on a node: every partition's queued
// (or dead) messages, each partition's up to the page's bound, in
// partition order, each with its "partition": a message's seq counts per
// partition, and retrying or dropping one through a node names both
// (outboxOpAcross).
func (a *api) listOutboxAcross(c *fiber.Ctx) error {
	answers, err := a.askAll(c)
	if err != nil {
		return err
	}
	var state string
	msgs := []json.RawMessage{}
	for p, body := range answers {
		var part struct {
			State    string            `json:"state"`
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(body, &part); err != nil {
			return fmt.Errorf("decode the outbox of partition %d: %w", p, err)
		}
		state = part.State
		for _, m := range part.Messages {
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(m, &fields); err != nil {
				return fmt.Errorf("decode the outbox of partition %d: %w", p, err)
			}
			fields["partition"] = json.RawMessage(strconv.Itoa(p))
			tagged, err := json.Marshal(fields)
			if err != nil {
				return err
			}
			msgs = append(msgs, tagged)
		}
	}
	return c.JSON(fiber.Map{"state": state, "messages": msgs})
}

// outboxOpAcross is a retry or a drop of an outbox message on a node: the
// message is its partition's (?partition=, as GET /v1/outbox lists it),
// asked of that partition's holder.
func (a *api) outboxOpAcross(c *fiber.Ctx) error {
	p, err := strconv.Atoi(c.Query("partition"))
	if err != nil || p < 0 || p >= a.people.log.Partitions() {
		return &httpError{fiber.StatusBadRequest, fmt.Sprintf("partition: want the message's partition, 0 to %d, as GET /v1/outbox lists it; got %q",
			a.people.log.Partitions()-1, c.Query("partition"))}
	}
	return a.askPartition(c, p)
}

// audienceMembersAcross is GET /v1/audiences/{id}/members on a node: a
// page of the members of every partition, in profile id order. Each
// partition answers the same page (members after the cursor, up to the
// limit, in profile id order); the first limit of all of them together
// are the page, since a partition with more to give gave a whole page of
// smaller ids.
func (a *api) audienceMembersAcross(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	answers, err := a.askAll(c)
	if err != nil {
		return err
	}
	parts := make([]consolePage[rules.Member], len(answers))
	for p, body := range answers {
		if err := json.Unmarshal(body, &parts[p]); err != nil {
			return fmt.Errorf("decode the members of partition %d: %w", p, err)
		}
	}
	members, next := mergePages(parts, limit, func(m rules.Member) string { return m.ProfileID })
	if members == nil {
		members = []rules.Member{}
	}
	return c.JSON(fiber.Map{"audience": pathParam(c, "id"), "members": members, "next": next})
}

// getJourneyAcross is GET /v1/journeys/{id} on a node: the journey's
// counters and each step's summed over every partition, and its
// experiments' arms summed and analyzed as one store with everyone would
// (journeys.MergeExperiments).
func (a *api) getJourneyAcross(c *fiber.Ctx) error {
	answers, err := a.askAll(c)
	if err != nil {
		return err
	}
	var (
		sum        journeySummary
		steps      []stepView
		exps       [][]journeys.ExperimentResult
		definition string
	)
	for p, body := range answers {
		var part struct {
			Journey     journeySummary              `json:"journey"`
			Steps       []stepView                  `json:"steps"`
			Experiments []journeys.ExperimentResult `json:"experiments"`
			Definition  string                      `json:"definition"`
		}
		if err := json.Unmarshal(body, &part); err != nil {
			return fmt.Errorf("decode journey %s of partition %d: %w", pathParam(c, "id"), p, err)
		}
		if p == 0 {
			sum, steps, definition = part.Journey, part.Steps, part.Definition
		} else {
			addSummary(&sum, part.Journey)
			for i := range min(len(steps), len(part.Steps)) {
				for k, v := range part.Steps[i].Counts {
					steps[i].Counts[k] += v
				}
			}
		}
		exps = append(exps, part.Experiments)
	}
	return c.JSON(fiber.Map{"journey": sum, "steps": steps, "experiments": journeys.MergeExperiments(sum.ID, exps), "definition": definition})
}

// addSummary adds a journey's counters of another partition to s.
func addSummary(s *journeySummary, j journeySummary) {
	s.Entered += j.Entered
	s.Waiting += j.Waiting
	s.Converted += j.Converted
	s.EvalErrors += j.EvalErrors
	s.Revenue += j.Revenue
}

// exportAudienceAcross is GET /v1/audiences/{id}/export.csv on a node:
// every partition's rows under one header, in profile id order as on one
// store. Each partition's part travels in one NATS message: a partition
// with more members than max_payload holds (~10,000 rows at 1 MB) answers
// 502, saying so.
func (a *api) exportAudienceAcross(c *fiber.Ctx) error {
	answers, err := a.askAll(c)
	if err != nil {
		return err
	}
	header := ""
	var rows []string
	for _, body := range answers {
		head, rest, _ := strings.Cut(string(body), "\n")
		header = head
		for line := range strings.Lines(rest) {
			rows = append(rows, line)
		}
	}
	slices.Sort(rows) // each row starts with its profile id, all of one length
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="audience-%s.csv"`, pathParam(c, "id")))
	return c.SendString(header + "\n" + strings.Join(rows, ""))
}
