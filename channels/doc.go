// Package channels delivers what journeys decide: a durable outbox in bbolt
// with retries, backoff with jitter, per-destination concurrency, circuit
// breakers and dead letters; and the destinations — email over SMTP (or
// .eml files), ad audiences on Meta and Google, webhooks and SMS.
//
// Every message has an idempotency key and is enqueued once. Our own state
// never doubles; a crash between an outside API accepting a message and
// the outbox marking it delivered repeats that one delivery, which each
// destination documents (Meta and Google dedupe adds and removes of the
// same hashed identifiers; a webhook receiver gets the key in a header).
// On a cluster node, the outbox notes what it delivered in its
// partition's stream, so the partition's next owner does not deliver it
// again (delivered.go). A destination's Rate paces its calls.
//
// Subpackages hold the destinations: email, meta, google, webhook, sms.
// channels never imports journeys; cmd/cartera moves journey actions into
// the outbox.
package channels
