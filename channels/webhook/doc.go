// Package webhook delivers outbox messages as signed JSON POSTs: journey
// sends on channel "webhook", and ad-audience changes to a generic
// "audience_webhook:<audience>" destination that gets hashed identifiers.
// It also gives receivers Verify, to check a call came from Cartera.
//
// It owns the wire format and its signature; it does not queue, retry or
// back off (the outbox in package channels does), nor decide consent for
// sends: the webhook channel needs no consent purpose (journeys map
// "webhook" to none), so a send is delivered whatever the person's consent.
// An audience add can be held back for a purpose named in
// Config.AudienceConsent (removals always go).
//
// # Request
//
// Each message is one request:
//
//	POST <Config.URL>
//	Content-Type: application/json
//	User-Agent: cartera-webhook/1
//	X-Cartera-Key: <the message's idempotency key>
//	X-Cartera-Timestamp: <unix seconds when signed>
//	X-Cartera-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// with one of two bodies. A journey's send (Message.Destination "webhook"
// or any name not starting with "audience_webhook:"):
//
//	{"id":"<key>","type":"send","profile_id":"p_1","journey":"cart_abandonment",
//	 "step":"reminder","template":"cart_reminder","data":{"cart_total":42.5},
//	 "locale":"es","sent_at":"2026-11-20T10:35:00Z"}
//
// An audience change (Message.Destination "audience_webhook:<audience>"):
//
//	{"id":"<key>","type":"audience","profile_id":"p_1","audience":"vip","op":"add",
//	 "identifiers":{"email_sha256":["<hex>"],"phone_sha256":["<hex>"]},
//	 "sent_at":"2026-11-20T10:35:00Z"}
//
// Fields that do not apply to a type are left out ("journey", "step",
// "data" and "locale" also when empty); "identifiers" always has both
// lists, empty as []. email_sha256 is the lower-case hex SHA-256 of the
// address trimmed and lower-cased; phone_sha256 that of the E.164 number
// with its "+" ("+34600111222"). "sent_at" is the signing time, the same
// second as X-Cartera-Timestamp. Body documents each field.
//
// # Retries and duplicates
//
// 2xx is delivered. 408, 429, 5xx and network errors (timeouts included)
// are retried by the outbox; any other status (3xx, other 4xx) is a
// permanent failure that goes to the dead letters. Redirects are not
// followed: a signed POST must not turn into a GET elsewhere.
//
// A delivered send records the outcome "Webhook Sent" {journey, step,
// template}; a delivered audience change "Audience Synced" {audience, op,
// destination: "audience_webhook"}, as the Meta and Google destinations do.
//
// Delivery is at least once: a retry, or a crash between the receiver's
// 2xx and the outbox marking the message delivered, sends the same message
// again. A retry carries the same X-Cartera-Key (and body "id"), with a
// new timestamp, signature and sent_at, so receivers dedupe on the key.
//
// # Receiving
//
//	body, _ := io.ReadAll(r.Body)
//	err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp),
//		r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute)
//	if err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//
// Verify compares in constant time and refuses timestamps outside the
// tolerance, so a captured request cannot be replayed later.
package webhook
