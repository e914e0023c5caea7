package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
)

// Requests about people (docs/cluster.md, "Requests about a person"): any
// node answers any client, and a request about one person is answered by
// the node that holds the partition of the person's profile. The node that
// took the request finds the profile in the identity index (Router.Lookup),
// its partition (Log.ProfilePartition), and asks the partition's holder
// over NATS request-reply (Log.Ask), on <stream>.req.<partition>; the
// holder answers there for as long as it holds the partition
// (Log.Answer). The subjects are outside the stream's.

// ErrNoHolder is returned (wrapped) by Ask when no node answers for the
// partition: it is being handed over, or its node died and its lease has
// not lapsed yet. Asking again a moment later finds the new holder.
var ErrNoHolder = errors.New("no node answers for the partition now")

// RequestSubject is the subject on which the holder of partition p
// answers requests about its people.
func (l *Log) RequestSubject(p int) string { return l.cfg.Stream + ".req." + strconv.Itoa(p) }

// ProfilePartition is the partition of the profile pid: where the records
// a Router addresses to it go, and where its state is.
func (l *Log) ProfilePartition(pid string) int { return partition(profileKey(pid), l.cfg.Partitions) }

// MaxRequest is the size of the largest request or answer Ask and Answer
// carry (the NATS server's max_payload).
func (l *Log) MaxRequest() int { return int(l.nc.MaxPayload()) }

// Answer answers the requests about partition p's people with handle
// until stop is called. Requests are handled one at a time, in order.
func (l *Log) Answer(p int, handle func(req []byte) []byte) (stop func() error, err error) {
	sub, err := l.nc.Subscribe(l.RequestSubject(p), func(m *nats.Msg) {
		if err := m.Respond(handle(m.Data)); err != nil {
			l.log.Warn("answer a request", "partition", p, "err", err)
		}
	})
	if err == nil {
		// Once Answer returns, the server knows whom to ask.
		err = l.nc.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("answer requests of partition %d: %w", p, err)
	}
	return func() error {
		if err := sub.Unsubscribe(); err != nil {
			return err
		}
		return l.nc.Flush() // no request is sent here any more
	}, nil
}

// Ask sends req to the holder of partition p and returns its answer,
// waiting at most until ctx ends, or the log's AckWait when ctx has no
// deadline.
func (l *Log) Ask(ctx context.Context, p int, req []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.AckWait)
		defer cancel()
	}
	m, err := l.nc.RequestWithContext(ctx, l.RequestSubject(p), req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("ask partition %d: %w", p, ErrNoHolder)
	}
	if err != nil {
		return nil, fmt.Errorf("ask partition %d: %w", p, err)
	}
	return m.Data, nil
}

// Lookup returns the profile id an identifier leads to in the identity
// index, following merges; "" when the index does not know it. It links
// nothing (it finishes a merge a dead router left half sent, as every read
// of the index does). A profile id (profiles.KindProfileID) leads to itself, or to
// the profile it was merged into.
func (r *Router) Lookup(ctx context.Context, id profiles.Identifier) (string, error) {
	id, err := r.ids.Normalize(id)
	if err != nil {
		return "", err
	}
	if id.Kind == profiles.KindProfileID {
		if !profiles.ValidProfileID(id.Value) {
			return "", nil
		}
		return r.follow(ctx, id.Value)
	}
	ent, err := r.kv.Get(ctx, r.identifierKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up an identifier: %w", err)
	}
	return r.follow(ctx, string(ent.Value()))
}

// Broadcast sends data to every node listening on topic (Listen), now;
// a node that is not listening misses it. For what every node must hear
// at once and nothing needs to keep (a development clock moved forward).
func (l *Log) Broadcast(topic string, data []byte) error {
	if err := l.nc.Publish(l.cfg.Stream+".all."+topic, data); err != nil {
		return fmt.Errorf("broadcast %s: %w", topic, err)
	}
	return l.nc.Flush()
}

// Listen calls fn with what is broadcast on topic, this node's own
// broadcasts included, until stop is called.
func (l *Log) Listen(topic string, fn func(data []byte)) (stop func() error, err error) {
	sub, err := l.nc.Subscribe(l.cfg.Stream+".all."+topic, func(m *nats.Msg) { fn(m.Data) })
	if err == nil {
		err = l.nc.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("listen to %s: %w", topic, err)
	}
	return sub.Unsubscribe, nil
}
