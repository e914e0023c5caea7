package apns

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// conn is an http.RoundTripper that sends every request over one HTTP/2
// connection, dialled on first use and again once it has failed.
//
// It replaces a pooling transport on purpose. net/http's Transport, on a
// cold start, dials once per waiting request (a burst of 1000 pushes
// opened hundreds of connections), and opens another connection whenever
// the requests in flight reach the server's MAX_CONCURRENT_STREAMS. Told
// to wait for a stream instead (HTTP2Config.StrictMaxConcurrentRequests,
// or StrictMaxConcurrentStreams in x/net/http2), its pool stalls: the
// requests queued for a stream hold reservations that count against the
// limit, so none ever fits (golang/go#70809). An http.ClientConn takes no
// reservations; its RoundTrip waits for a free stream.
//
// Until the server's SETTINGS arrive, a new connection assumes it may
// open 100 streams, and a server that allows fewer refuses the rest. So
// the first request on a connection goes alone, and the others wait for
// its answer, by which time the server's limit is known.
type conn struct {
	tr          *http.Transport // makes connections; its pool is unused
	addr        string          // host:port
	dialTimeout time.Duration

	mu  sync.Mutex
	cur *entry // the connection in use or being opened; nil if none
}

// entry is one connection, from its dial to its first answer.
type entry struct {
	dialed  chan struct{} // closed when the dial has ended
	cc      *http.ClientConn
	dialErr error         // set before dialed is closed
	opened  chan struct{} // closed when the first request has returned, or the dial failed
	openErr error         // set before opened is closed: the connection failed

	claimed bool // guarded by conn.mu: the first request is on its way
}

// RoundTrip sends req. It makes two attempts at most while req's context
// is alive: when the connection fails, or fails to open, it tries again
// on a new one (the failed one closes once its other requests are done).
// A push that had reached APNs before the failure is then sent twice,
// which for a pass update costs the device one more check.
func (c *conn) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		e, opener, err := c.get(req.Context())
		if err == nil {
			var res *http.Response
			res, err = e.cc.RoundTrip(req)
			if opener && c.open(e) && err != nil {
				err = fmt.Errorf("%w: %w", ErrNoConnection, err)
			}
			if err == nil || req.Context().Err() != nil {
				return res, err
			}
			c.drop(e)
		}
		if req.Context().Err() != nil || attempt == 2 || req.GetBody == nil {
			return nil, err
		}
		body, gerr := req.GetBody()
		if gerr != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = body
	}
}

// get returns the connection to send on, dialling one if there is none.
// opener is true for the first request on a new connection, which the
// caller must pass to open once it has its answer. Concurrent callers
// share one dial; each stops waiting when its own ctx ends.
func (c *conn) get(ctx context.Context) (e *entry, opener bool, err error) {
	for {
		c.mu.Lock()
		e = c.cur
		if e == nil || e.unusable() {
			e = &entry{dialed: make(chan struct{}), opened: make(chan struct{})}
			c.cur = e
			// The dial outlives the request that started it: others wait
			// for it too.
			go c.dial(context.WithoutCancel(ctx), e)
		}
		c.mu.Unlock()

		select {
		case <-e.dialed:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if e.dialErr != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrNoConnection, e.dialErr)
		}
		c.mu.Lock()
		opener = !e.claimed
		e.claimed = true
		c.mu.Unlock()
		if opener {
			return e, true, nil
		}

		select {
		case <-e.opened:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if e.openErr != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrNoConnection, e.openErr)
		}
		if e.cc.Err() == nil {
			return e, false, nil
		}
		// Closed since it opened: take or dial the next one.
	}
}

// unusable reports whether e should be replaced. It requires c.mu.
func (e *entry) unusable() bool {
	select {
	case <-e.opened:
		return e.dialErr != nil || e.openErr != nil || e.cc.Err() != nil
	default:
		return false // still being dialled or opened
	}
}

func (c *conn) dial(ctx context.Context, e *entry) {
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	e.cc, e.dialErr = c.tr.NewClientConn(ctx, "https", c.addr)
	if e.dialErr != nil {
		c.forget(e)
		close(e.opened)
	}
	close(e.dialed)
}

// open records that the first request on e has returned, and reports
// whether the connection failed under it (a TLS alert for a refused
// certificate, a reset). The requests waiting for it then fail with the
// same error rather than each dialling again.
func (c *conn) open(e *entry) (failed bool) {
	if err := e.cc.Err(); err != nil {
		e.openErr = err
		c.forget(e)
		failed = true
	}
	close(e.opened)
	return failed
}

// drop stops handing out e, and closes its connection once its requests
// are done.
func (c *conn) drop(e *entry) {
	c.forget(e)
	cc := e.cc
	cc.SetStateHook(func(cc *http.ClientConn) {
		if cc.InFlight() == 0 {
			cc.Close()
		}
	})
	// The hook runs on changes only: close one that is idle already.
	if cc.InFlight() == 0 {
		cc.Close()
	}
}

func (c *conn) forget(e *entry) {
	c.mu.Lock()
	if c.cur == e {
		c.cur = nil
	}
	c.mu.Unlock()
}

// close closes the connection, interrupting its requests.
func (c *conn) close() {
	c.mu.Lock()
	e := c.cur
	c.cur = nil
	c.mu.Unlock()
	if e == nil {
		return
	}
	<-e.dialed
	if e.cc != nil {
		e.cc.Close()
	}
}
