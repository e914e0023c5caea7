package google

// The request status poller. A Data Manager ingest answers 200 with a
// requestId once the request is accepted; the records are processed
// later, and a request can still fail then ("Records can still fail
// during asynchronous processing"). Google's Diagnostics guide
// (https://developers.google.com/data-manager/api/devguides/diagnostics):
// "Wait for 30 minutes, then send a RetrieveRequestStatus request for each
// successful request_id. Periodically repeat this step for each request_id
// until the destination status for each destination reaches SUCCESS,
// PARTIAL_SUCCESS, or FAILURE. Use an exponential backoff algorithm to
// wait between each request."
//
//	GET <base>/requestStatus:retrieve?requestId=<id>      (empty body)
//	→ {"requestStatusPerDestination":[{"destination":{…},
//	     "requestStatus":"PROCESSING"|"SUCCESS"|"FAILED"|"PARTIAL_SUCCESS"|"REQUEST_STATUS_UNKNOWN",
//	     "errorInfo":{"errorCounts":[{"recordCount":"<int64>","reason":"<ProcessingErrorReason>"}]},
//	     "warningInfo":{"warningCounts":[…]}, …}]}
//
// (requestStatus:retrieve reference). The ids of accepted requests are
// kept in this package's bucket of the bbolt file, so a restart goes on
// polling them:
//
//	google_request_status   request id → JSON pendingRequest (destination, method, when
//	                        accepted, next poll, polls made, the people it carried:
//	                        profile ids and, for conversions, the sale without identifiers;
//	                        an erasure drops the person: ErasePerson)
//
// A terminal status is counted (cartera_google_request_status_total by
// destination and status) and the record deleted. FAILED (every record of
// the request failed) is logged as a WARN and each person of the request
// becomes a dead letter of the destination, with the reasons as its error:
// the operator sees them in GET /v1/outbox?state=dead and the console's
// Outbox, and a retry, once the cause is fixed, sends the person again
// with their identifiers at that time. PARTIAL_SUCCESS is logged with the
// reason counts (Google does not say which records failed). A request
// still not terminal after GiveUpAfter is counted as UNKNOWN and dropped.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/channels"
)

var bucketStatus = []byte("google_request_status")

// Terminal and other statuses the poller counts (RequestStatus values,
// and Unknown for a request given up on).
const (
	StatusSuccess        = "SUCCESS"
	StatusPartialSuccess = "PARTIAL_SUCCESS"
	StatusFailed         = "FAILED"
	StatusProcessing     = "PROCESSING"
	StatusUnknown        = "REQUEST_STATUS_UNKNOWN"
)

// StatusConfig is when the poller asks about a request.
type StatusConfig struct {
	// Off turns the poller off (request ids are then only kept in the
	// "Audience Synced" and "Conversion Sent" outcomes).
	Off bool `yaml:"off"`
	// FirstWait is the wait from acceptance to the first poll (default
	// 30m, as Google's Diagnostics guide says); each later wait doubles,
	// up to MaxWait (default 4h).
	FirstWait time.Duration `yaml:"first_wait"`
	MaxWait   time.Duration `yaml:"max_wait"`
	// GiveUpAfter drops a request still not terminal this long after it
	// was accepted (default 72h: records take up to a day).
	GiveUpAfter time.Duration `yaml:"give_up_after"`
}

// DefaultStatusConfig is 30m, doubling up to 4h, for up to 72h.
func DefaultStatusConfig() StatusConfig {
	return StatusConfig{FirstWait: 30 * time.Minute, MaxWait: 4 * time.Hour, GiveUpAfter: 72 * time.Hour}
}

// Validate reports the first invalid setting, naming it.
func (c StatusConfig) Validate(field string) error {
	switch {
	case c.FirstWait <= 0:
		return fmt.Errorf("%s.first_wait: want a positive duration, got %s", field, c.FirstWait)
	case c.MaxWait < c.FirstWait:
		return fmt.Errorf("%s.max_wait: want at least first_wait (%s), got %s", field, c.FirstWait, c.MaxWait)
	case c.GiveUpAfter < c.FirstWait:
		return fmt.Errorf("%s.give_up_after: want at least first_wait (%s), got %s", field, c.FirstWait, c.GiveUpAfter)
	}
	return nil
}

// DeadLetters takes the people of a failed request (channels.Outbox.Bury).
type DeadLetters interface {
	Bury(msgs ...*channels.Message) (int, error)
}

// StatusOptions are the poller's dependencies.
type StatusOptions struct {
	Now    func() time.Time
	Logger *slog.Logger
	// Registerer takes cartera_google_request_status_total (nil: none).
	Registerer prometheus.Registerer
	// Dead takes the people of a FAILED request; nil: logged only.
	Dead DeadLetters
}

// StatusPoller polls requestStatus:retrieve about every accepted Data
// Manager request until it is terminal. Destinations hand it their
// requests (DataManagerConfig.Status, ConversionsConfig.Status); Open
// starts its goroutine and Close stops and joins it.
type StatusPoller struct {
	db     *bbolt.DB
	cfg    StatusConfig
	now    func() time.Time
	log    *slog.Logger
	dead   DeadLetters
	counts *prometheus.CounterVec

	mu      sync.Mutex
	clients map[string]*dmClient // destination name → its API client
	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewStatusPoller creates the poller's bucket in db.
func NewStatusPoller(db *bbolt.DB, cfg StatusConfig, opts StatusOptions) (*StatusPoller, error) {
	if err := cfg.Validate("google_status"); err != nil {
		return nil, err
	}
	p := &StatusPoller{db: db, cfg: cfg, now: opts.Now, log: opts.Logger, dead: opts.Dead, clients: map[string]*dmClient{}, wake: make(chan struct{}, 1),
		counts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cartera_google_request_status_total",
			Help: "Data Manager requests settled by requestStatus:retrieve, by destination and final status (REQUEST_STATUS_UNKNOWN: given up)."},
			[]string{"destination", "status"})}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(p.counts); err != nil {
			return nil, fmt.Errorf("google status metrics: %w", err)
		}
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketStatus)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucketStatus, err)
	}
	return p, nil
}

// register lets the poller ask about dest's requests with c.
func (p *StatusPoller) register(dest string, c *dmClient) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[dest] = c
}

func (p *StatusPoller) client(dest string) *dmClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients[dest]
}

// pendingRequest is one accepted request awaiting a terminal status.
type pendingRequest struct {
	RequestID   string        `json:"request_id"`
	Destination string        `json:"destination"`
	Method      string        `json:"method"`
	AcceptedAt  time.Time     `json:"accepted_at"`
	NextAt      time.Time     `json:"next_at"`
	Polls       int           `json:"polls"`
	People      []pendingItem `json:"people"`
}

// pendingItem is one person of a request: what a dead letter needs to
// send them again, without their identifiers (looked up at the retry).
type pendingItem struct {
	ProfileID string          `json:"profile_id"`
	Key       string          `json:"key"` // the message's outbox key
	Payload   json.RawMessage `json:"payload"`
}

// track keeps an accepted request until it is terminal. The request was
// accepted whatever happens here, so a failure to keep it is logged, not
// returned (the delivery stands; only the later check is lost).
func (p *StatusPoller) track(dest, method, id string, people []pendingItem) {
	if p == nil || id == "" {
		return
	}
	if err := p.keep(dest, method, id, people); err != nil {
		p.log.Error("google request status: not kept", "destination", dest, "request_id", id, "err", err)
	}
}

func (p *StatusPoller) keep(dest, method, id string, people []pendingItem) error {
	now := p.now().UTC()
	r := pendingRequest{RequestID: id, Destination: dest, Method: method, AcceptedAt: now, NextAt: now.Add(p.cfg.FirstWait), People: people}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = p.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketStatus).Put([]byte(id), v) })
	if err != nil {
		return fmt.Errorf("google: keep request %s for its status: %w", id, err)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// ErasePerson drops an erased person from the pending requests within tx
// (the erasure's transaction), so a request that fails later does not
// bring their profile id back as a dead letter. It returns how many
// requests held them.
func (p *StatusPoller) ErasePerson(tx *bbolt.Tx, profileID string) (int, error) {
	b := tx.Bucket(bucketStatus)
	if b == nil || profileID == "" {
		return 0, nil
	}
	type change struct{ k, v []byte }
	var changes []change
	err := b.ForEach(func(k, v []byte) error {
		var r pendingRequest
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		kept := r.People[:0]
		for _, it := range r.People {
			if it.ProfileID != profileID {
				kept = append(kept, it)
			}
		}
		if len(kept) == len(r.People) {
			return nil
		}
		r.People = kept
		nv, err := json.Marshal(r)
		if err != nil {
			return err
		}
		changes = append(changes, change{append([]byte(nil), k...), nv})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("erase person from pending requests: %w", err)
	}
	for _, c := range changes {
		if err := b.Put(c.k, c.v); err != nil {
			return 0, err
		}
	}
	return len(changes), nil
}

// PendingRequest is what Pending reports of a request being polled.
type PendingRequest struct {
	RequestID, Destination, Method string
	AcceptedAt, NextAt             time.Time
	Polls, People                  int
}

// Pending lists the requests awaiting a terminal status, by request id.
func (p *StatusPoller) Pending() ([]PendingRequest, error) {
	var out []PendingRequest
	err := p.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketStatus).ForEach(func(_, v []byte) error {
			var r pendingRequest
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, PendingRequest{RequestID: r.RequestID, Destination: r.Destination, Method: r.Method,
				AcceptedAt: r.AcceptedAt, NextAt: r.NextAt, Polls: r.Polls, People: len(r.People)})
			return nil
		})
	})
	return out, err
}

// Open starts polling in a goroutine of the poller's own, until Close or
// ctx ends.
func (p *StatusPoller) Open(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		return
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		p.run(ctx)
	}()
}

// Close stops polling and waits for a poll in flight to end; the requests
// not yet terminal stay for the next start.
func (p *StatusPoller) Close() error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return nil
}

func (p *StatusPoller) run(ctx context.Context) {
	for {
		next, err := p.PollDue(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := time.Minute // after an error of the file, or with nothing pending
		if err != nil {
			p.log.Error("google request status", "err", err)
		} else if !next.IsZero() {
			wait = min(max(next.Sub(p.now()), time.Second), time.Hour)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// PollDue asks about every request due by now and settles the terminal
// ones; it returns when the next one is due (zero: none pending). A
// cancelled ctx stops it between requests, counting nothing.
func (p *StatusPoller) PollDue(ctx context.Context) (next time.Time, err error) {
	now := p.now()
	var due []pendingRequest
	err = p.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketStatus).ForEach(func(_, v []byte) error {
			var r pendingRequest
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.NextAt.After(now) {
				if next.IsZero() || r.NextAt.Before(next) {
					next = r.NextAt
				}
				return nil
			}
			due = append(due, r)
			return nil
		})
	})
	if err != nil {
		return next, fmt.Errorf("read pending requests: %w", err)
	}
	sort.Slice(due, func(i, j int) bool { return due[i].NextAt.Before(due[j].NextAt) })
	for _, r := range due {
		if ctx.Err() != nil {
			return next, nil
		}
		again, err := p.poll(ctx, r, now)
		if err != nil {
			return next, err
		}
		if !again.IsZero() && (next.IsZero() || again.Before(next)) {
			next = again
		}
	}
	return next, nil
}

// poll asks about one request, and settles it or plans the next poll
// (returned; zero when settled).
func (p *StatusPoller) poll(ctx context.Context, r pendingRequest, now time.Time) (time.Time, error) {
	status, detail := "", ""
	c := p.client(r.Destination)
	var pollErr error
	if c == nil {
		pollErr = errors.New("destination no longer configured")
	} else {
		var statuses []RequestStatus
		statuses, pollErr = c.retrieve(ctx, r.RequestID)
		if ctx.Err() != nil {
			return time.Time{}, nil // shutdown: asked again at the next start
		}
		if pollErr == nil {
			status, detail = settle(statuses)
		}
	}
	if status == "" || status == StatusProcessing {
		if now.Sub(r.AcceptedAt) < p.cfg.GiveUpAfter {
			return p.later(r, now, pollErr)
		}
		status = StatusUnknown
		if pollErr != nil {
			detail = pollErr.Error()
		}
	}
	if err := p.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketStatus).Delete([]byte(r.RequestID)) }); err != nil {
		return time.Time{}, fmt.Errorf("settle request %s: %w", r.RequestID, err)
	}
	p.counts.WithLabelValues(r.Destination, status).Inc()
	attrs := []any{"destination", r.Destination, "method", r.Method, "request_id", r.RequestID, "status", status, "people", len(r.People), "polls", r.Polls + 1}
	switch status {
	case StatusSuccess:
		p.log.Debug("google request done", attrs...)
	case StatusPartialSuccess:
		p.log.Warn("google request partly failed: some records were not processed", append(attrs, "errors", detail)...)
	case StatusUnknown:
		p.log.Warn("google request status unknown: given up", append(attrs, "err", detail)...)
	case StatusFailed:
		p.log.Warn("google request failed: its people are dead letters of the destination", append(attrs, "errors", detail)...)
		p.bury(r, detail, now)
	}
	return time.Time{}, nil
}

// later plans the next poll with exponential backoff.
func (p *StatusPoller) later(r pendingRequest, now time.Time, pollErr error) (time.Time, error) {
	if pollErr != nil {
		p.log.Warn("google request status not retrieved: asked again later", "destination", r.Destination, "request_id", r.RequestID, "err", pollErr)
	}
	wait := p.cfg.FirstWait
	for i := 0; i < r.Polls && wait < p.cfg.MaxWait; i++ {
		wait *= 2
	}
	r.Polls++
	r.NextAt = now.Add(min(wait, p.cfg.MaxWait)).UTC()
	v, err := json.Marshal(r)
	if err != nil {
		return time.Time{}, err
	}
	if err := p.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketStatus).Put([]byte(r.RequestID), v) }); err != nil {
		return time.Time{}, fmt.Errorf("plan next poll of %s: %w", r.RequestID, err)
	}
	return r.NextAt, nil
}

// bury makes each person of a failed request a dead letter of its
// destination; its payload has no identifiers (the retry looks them up).
func (p *StatusPoller) bury(r pendingRequest, detail string, now time.Time) {
	if p.dead == nil || len(r.People) == 0 {
		return
	}
	msgs := make([]*channels.Message, 0, len(r.People))
	for _, it := range r.People {
		msgs = append(msgs, &channels.Message{Key: "google-request/" + r.RequestID + "/" + it.Key, Destination: r.Destination, ProfileID: it.ProfileID,
			Payload: it.Payload, CreatedAt: now.UTC(), Attempts: 1,
			LastError: fmt.Sprintf("google: %s request %s FAILED at processing (requestStatus:retrieve): %s", r.Method, r.RequestID, detail)})
	}
	if _, err := p.dead.Bury(msgs...); err != nil {
		p.log.Error("google request failed: dead letters not written", "destination", r.Destination, "request_id", r.RequestID, "err", err)
	}
}

// settle reads the statuses of a request's destinations (ours send to
// one): FAILED if any failed, PROCESSING while any is not done,
// PARTIAL_SUCCESS if any partly failed, else SUCCESS; with the error
// counts "REASON×n".
func settle(statuses []RequestStatus) (status, detail string) {
	if len(statuses) == 0 {
		return StatusProcessing, ""
	}
	var failed, processing, partial bool
	var errs []string
	for _, s := range statuses {
		switch s.Status {
		case StatusFailed:
			failed = true
		case StatusPartialSuccess:
			partial = true
		case StatusSuccess:
		default: // PROCESSING, REQUEST_STATUS_UNKNOWN, or a value added later
			processing = true
		}
		if e := s.errors(); e != "" {
			errs = append(errs, e)
		}
	}
	switch {
	case failed:
		status = StatusFailed
	case processing:
		status = StatusProcessing
	case partial:
		status = StatusPartialSuccess
	default:
		status = StatusSuccess
	}
	return status, strings.Join(errs, "; ")
}

// retrieve asks requestStatus:retrieve about id.
func (c *dmClient) retrieve(ctx context.Context, id string) ([]RequestStatus, error) {
	var resp struct {
		Statuses []RequestStatus `json:"requestStatusPerDestination"`
	}
	if err := c.do(ctx, "GET", c.status+"?requestId="+url.QueryEscape(id), "requestStatus:retrieve", nil, &resp); err != nil {
		return nil, err
	}
	return resp.Statuses, nil
}
