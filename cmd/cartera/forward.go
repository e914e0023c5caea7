package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"cartera/profiles/jetstream"
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
	forwardedRequestHeaders = []string{fiber.HeaderAuthorization, fiber.HeaderContentType, fiber.HeaderAccept}
	forwardedAnswerHeaders  = []string{fiber.HeaderContentType, fiber.HeaderContentDisposition, fiber.HeaderRetryAfter, fiber.HeaderCacheControl}
)

// personForwarder sends requests about a person to the node holding them.
type personForwarder struct {
	router *jetstream.Router
	log    *jetstream.Log
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
	req := forwardedRequest{Method: c.Method(), URI: c.OriginalURL(), Header: map[string]string{}, Body: c.Body()}
	for _, h := range forwardedRequestHeaders {
		if v := c.Get(h); v != "" {
			req.Header[h] = v
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode a forwarded request: %w", err)
	}
	if len(body) > a.people.log.MaxRequest() {
		return &httpError{fiber.StatusRequestEntityTooLarge, fmt.Sprintf("the request is larger than the cluster's NATS max_payload (%d bytes)", a.people.log.MaxRequest())}
	}
	p := a.people.log.ProfilePartition(pid)
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

func encodeAnswer(a forwardedAnswer) []byte {
	out, err := json.Marshal(a)
	if err != nil {
		// A struct of strings, bytes and an int always encodes.
		panic(err)
	}
	return out
}
