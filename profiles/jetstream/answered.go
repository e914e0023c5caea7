package jetstream

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// startWait bounds how long opening a bucket at start (or reading a
// partition's snapshot at its claim) waits for the cluster to answer:
// three servers electing the leaders of new streams can take longer than
// nats.go's 5 s for one request (seen with three nodes starting at once
// on `make cluster`), and once longer than 30 s, when a node gave up
// opening the identity index and exited.
const startWait = 2 * time.Minute

// untilAnswered calls open until it succeeds, fails for another reason
// than an unanswered request (a timeout, or no server answering yet), ctx
// ends, or startWait has passed; it returns open's last result.
func untilAnswered[T any](ctx context.Context, open func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(startWait)
	wait := 100 * time.Millisecond
	for {
		v, err := open(ctx)
		if err == nil || !unanswered(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// unanswered reports whether err is a request nobody answered in time.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}
