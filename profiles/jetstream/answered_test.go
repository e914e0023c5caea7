package jetstream

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

// Opening a bucket at start is tried again while the cluster does not
// answer (a timeout, no responders), and not for any other failure.
func TestUntilAnswered(t *testing.T) {
	other := errors.New("bucket config differs")
	for _, tc := range []struct {
		name  string
		fails []error
		want  error
		calls int
	}{
		{"answered at once", nil, nil, 1},
		{"timeouts, then answered", []error{fmt.Errorf("open: %w", context.DeadlineExceeded), nats.ErrNoResponders, nats.ErrTimeout}, nil, 4},
		{"another failure", []error{other}, other, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			v, err := untilAnswered(context.Background(), func(context.Context) (int, error) {
				calls++
				if calls <= len(tc.fails) {
					return 0, tc.fails[calls-1]
				}
				return 7, nil
			})
			if !errors.Is(err, tc.want) || calls != tc.calls || (err == nil && v != 7) {
				t.Fatalf("untilAnswered = %d, %v after %d calls; want %v after %d", v, err, calls, tc.want, tc.calls)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	if _, err := untilAnswered(ctx, func(context.Context) (int, error) { calls++; return 0, context.DeadlineExceeded }); err == nil || calls != 1 {
		t.Fatalf("with ctx ended: %v after %d calls, want the failure after one", err, calls)
	}
}
