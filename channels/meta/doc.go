// Package meta keeps a Meta (Facebook, Instagram) Customer File Custom
// Audience in step with a Cartera audience, through the Marketing API's
// users edge: a batch of outbox messages becomes POST requests for the
// adds and DELETE requests for the removes.
//
// It owns the wire format, the normalizing and hashing of identifiers, and
// the mapping of Meta's answers to results. It does not queue, batch,
// retry or back off (the outbox in package channels does), check consent
// (an add is enqueued only with the consent it needs), nor create
// audiences: Config.AudienceID names one that exists.
//
// # Request
//
//	POST   <BaseURL>/<Version>/<AudienceID>/users     (adds)
//	DELETE <BaseURL>/<Version>/<AudienceID>/users     (removes)
//	Authorization: Bearer <AccessToken>
//	Content-Type: application/json
//
//	{"session":{"session_id":N,"batch_seq":1,"last_batch_flag":true,"estimated_num_total":2},
//	 "payload":{"schema":["EMAIL","PHONE","FN","LN","COUNTRY","EXTERN_ID"],
//	            "data":[["<email>","<phone>","<fn>","<ln>","<country>","<extern id>"],
//	                    ["<email>","","<fn>","<ln>","<country>","<extern id>"]]}}
//
// Version is v26.0 unless configured. The session object is the one the
// Customer File Custom Audiences guide marks required: the requests of one
// operation in a batch are one session (batch_seq from 1, last_batch_flag
// on the last, estimated_num_total the rows of all), and the same messages
// make the same session_id when retried.
//
// Each row is one address or number of a person; a person with two
// addresses and one number is two rows (["e1","p1",…], ["e2","",…]), and a
// missing value is "". FN, LN and COUNTRY come from the person's traits
// first_name, last_name and country at delivery (Config.Profiles):
// lower-cased, letters only, hashed; COUNTRY the lower-case ISO 3166-1
// alpha-2 code, hashed. EXTERN_ID is the SHA-256 of the profile id (the
// users reference does not require hashing it; the Conversions API
// recommends hashing external_id, and the same value in both lets Meta
// match them). Values are the lower-case hex SHA-256 of the normalized
// identifier:
//
//   - EMAIL: trimmed and lower-cased ("test@example.com" →
//     973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b);
//   - PHONE: digits only, country code first, no "+" and no leading zeros
//     ("+1 650-555-1234" → "16505551234").
//
// The rules are those of "Hashing and Normalizing Data" in Meta's Customer
// File Custom Audiences guide
// (https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences):
// EMAIL "trim leading and trailing white space and convert all characters
// to lowercase"; PHONE "remove symbols, letters, and any leading zeroes"
// with the country code as prefix.
//
// Conversions sends store purchases to a dataset through the Conversions
// API: POST <BaseURL>/<Version>/<pixel id>/events with
// {"data":[{"event_name":"Purchase","event_time":<unix>,
// "action_source":"physical_store","event_id":"<order id>","user_data":
// {"em":[…],"ph":[…],"fn":[…],"ln":[…],"country":[…],"external_id":[…]},
// "custom_data":{"value":…,"currency":"EUR","order_id":"<order id>"}}]},
// at most 1,000 events a request; event_id deduplicates the sale.
//
// The schema names are "EMAIL" and "PHONE", not "EMAIL_SHA256" and
// "PHONE_SHA256": the users reference
// (https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users,
// and the usersreplace reference beside it) lists EMAIL_SHA256 and
// PHONE_SHA256 as single-key schemas given as a string, and for "an array
// of multiple keys for multi-key match" the key types EMAIL, PHONE, FN, …,
// whose values are SHA-256 hashes as in its example
// {"schema":["EMAIL","LOOKALIKE_VALUE"],"data":[["9b43…",44.5],…]}.
//
// The token goes in the Authorization header as an OAuth 2.0 bearer token,
// which the Graph API takes in place of the access_token parameter the
// Marketing API examples use; in a header it stays out of URLs and bodies
// that proxies and logs keep. The body is JSON, which the Graph API reads
// like form parameters. A request holds at most 10,000 rows, Meta's limit
// ("You can add an unlimited number of records for an audience, but only a
// maximum of 10000 at a time"); a larger batch is split, never one person
// across two requests.
//
// # Results
//
//   - 2xx: each message of the request is delivered, with the outcome
//     "Audience Synced" {audience, destination: "meta", op}.
//   - 5xx, 408, 429, a network error or a timeout: a plain error for every
//     message of the request; the outbox retries them.
//   - Code 190 (an invalid or expired token) is a dead letter whose error
//     says to generate a new system user token; 10 and 200-299 say which
//     permission is missing.
//   - A 4xx that Graph API's error handling guide
//     (https://developers.facebook.com/docs/graph-api/guides/error-handling)
//     calls temporary — "is_transient": true, codes 1 and 2 (service), 4,
//     17, 32 and 341 (throttling), 368 (temporarily blocked), and the
//     Marketing API's rate limits 613 and 80003 (custom audiences) — is
//     retried too: Meta answers throttling with 400, not 429.
//   - Any other 4xx (bad token, deleted or flagged audience, bad payload):
//     a channels.PermanentError for every message of the request.
//   - A message whose payload does not decode, whose op is neither "add"
//     nor "remove", or whose person has no usable email and no phone
//     ("no identifiers") fails permanently without a request.
//
// # Order within a batch
//
// Messages come in outbox order. Of several messages for one person
// (Message.ProfileID, within one audience) the last wins: "add, remove" in
// one batch sends only the removal. The earlier ones are delivered with no
// request and no outcome, as their effect is overridden anyway; if the
// winning request then fails, the retry carries the final state. A message
// with no profile id is never merged. Adds go before removes, so an
// identifier that two different people share ends up removed when one of
// them leaves in the same batch (privacy first) — as far as request order
// goes: Meta applies changes asynchronously, usually within 24 hours.
//
// # Duplicates
//
// Delivery is at least once: a retry after a timeout, or a crash between
// Meta's 2xx and the outbox marking the batch delivered, sends the same
// rows again. That is safe: Meta matches the hashed rows to its users and
// the audience is a set, so adding rows already in it, or removing rows
// not in it, changes nothing; a repeated add or remove of the same hashes
// leaves the audience as a single one would.
//
// # Example
//
//	d, err := meta.New(meta.Config{
//		Name:        "meta:retargeting",
//		AudienceID:  "23851234567890123",
//		AccessToken: os.Getenv("META_TOKEN"),
//		BaseURL:     os.Getenv("CARTERA_META_URL"), // "" is Meta's
//	})
//	if err != nil {
//		return err
//	}
//	results := d.Deliver(ctx, msgs) // one Result per message, in order
package meta
