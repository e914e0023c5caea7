package main

import (
	"bytes"
	"errors"
	"net"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// guardEdge makes the HTTP edge safe to put behind a proxy and in front of
// the internet: requests fasthttp cannot parse get a fixed answer that
// never echoes what was sent (fasthttp's own message quotes the request,
// Authorization and Cookie included), and a request whose framing two
// parsers could read differently (two Content-Lengths, or Content-Length
// with Transfer-Encoding: the stuff of request smuggling) is refused and
// its connection closed. It must be called before any route is added.
func guardEdge(app *fiber.App) {
	app.Server().ErrorHandler = unparsable
	app.Use(refuseAmbiguousFraming)
}

// unparsable answers a request fasthttp could not read.
func unparsable(ctx *fasthttp.RequestCtx, err error) {
	status, msg := fasthttp.StatusBadRequest, "malformed HTTP request"
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		status, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.As(err, &netErr) && netErr.Timeout():
		status, msg = fasthttp.StatusRequestTimeout, "request not received in time"
	case errors.Is(err, fasthttp.ErrDuplicateContentLength):
		msg = "malformed HTTP request: more than one Content-Length"
	}
	ctx.SetConnectionClose()
	ctx.SetStatusCode(status)
	ctx.SetContentType(fiber.MIMEApplicationJSON)
	ctx.SetBodyString(`{"success":false,"error":"` + msg + `"}`)
}

// refuseAmbiguousFraming refuses a request that carries Content-Length
// and Transfer-Encoding both (RFC 9112 §6.3: a server may reject it, and
// must close the connection after it). fasthttp reads such a body as
// chunked; a proxy in front may have read it by length.
func refuseAmbiguousFraming(c *fiber.Ctx) error {
	h := &c.Request().Header
	if len(h.Peek(fiber.HeaderTransferEncoding)) == 0 && !rawHas(h.RawHeaders(), "transfer-encoding") {
		return c.Next()
	}
	if !rawHas(h.RawHeaders(), "content-length") {
		return c.Next()
	}
	c.Context().SetConnectionClose()
	return &httpError{fiber.StatusBadRequest, "malformed HTTP request: both Content-Length and Transfer-Encoding"}
}

// rawHas reports whether raw request headers hold a header by name.
func rawHas(raw []byte, name string) bool {
	for line := range bytes.SplitSeq(raw, []byte("\r\n")) {
		k, _, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(k)), name) {
			return true
		}
	}
	return false
}
