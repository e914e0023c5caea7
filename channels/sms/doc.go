// Package sms sends journey steps as text messages through a
// Twilio-shaped API, and reads the SMS templates they use.
//
// It owns the provider call, the mapping of its answers, and the template
// files (TextTemplates: <dir>/<id>[.<locale>].sms.txt, Go text/template
// with missingkey=error, mistakes as rules.FileErrors; a locale falls back
// to its language, then to the default locale, as email's do). Keep them in
// a folder of their own: package email reads every *.txt of its folder as
// an email's text part. It does not queue,
// retry or back off (the outbox in package channels does), nor track
// delivery receipts (Twilio's status callbacks are not wired).
//
// # Delivery
//
// For each message (payload channels.SendPayload) Deliver looks the person
// up at delivery time and:
//
//   - holds the message back with a permanent channels.ErrNoConsent unless
//     the person's "sms" consent is true now (missing counts as no);
//   - fails permanently with ErrNoPhone unless the person has a phone in
//     E.164 form (the first such one is used);
//   - renders the template in the person's locale with the payload's data,
//     plus "traits" (the person's traits) and "profile_id" when the data
//     has no such keys; a render error is permanent;
//   - POSTs to <BaseURL>/2010-04-01/Accounts/<AccountSID>/Messages.json,
//     form-encoded Body, From and To, with HTTP Basic auth
//     AccountSID:AuthToken and the header Idempotency-Key: <message key>.
//
// Answers:
//
//	2xx (Twilio: 201)         delivered; outcome "SMS Sent" {sid, journey, step}
//	400 error 21610 (STOP)    permanent; outcome "SMS Unsubscribed" {code, journey, step}
//	                          with consent {"sms": false}
//	400 error 21211           permanent; outcome "SMS Failed" {code, reason: "invalid_number", journey, step}
//	408, 429, 5xx, network    retried by the outbox
//	any other status          permanent (*APIError with Twilio's code)
//
// Errors and outcomes never carry the phone number or the text; Twilio's
// own error message is dropped for that reason (its code is kept).
//
// # Duplicates
//
// Twilio does not dedupe message creation and has no idempotency key, so
// delivery is at least once: a crash between Twilio accepting a message
// and the outbox marking it delivered, a timeout after Twilio accepted, or
// a 5xx that Twilio answered after queueing, repeats that one SMS. The
// message key goes out as an Idempotency-Key header, a hint that Twilio
// ignores but a proxy or another Twilio-shaped provider may honour. An
// accepted answer that cannot be decoded still counts as sent, so a
// garbled 201 is never retried into a second text.
//
// # Example
//
//	tpl, err := sms.LoadTextTemplates("examples/templates/sms", "en")
//	if err != nil {
//		return err // rules.FileErrors: file:line:col: message
//	}
//	cfg := sms.DefaultConfig()
//	cfg.AccountSID, cfg.AuthToken, cfg.From = sid, token, "+15005550006"
//	dest, err := sms.New(cfg, tpl, profileStore)
package sms
