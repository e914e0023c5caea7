// Package google keeps a Google Ads Customer Match list in step with a
// Cartera audience, and sends store purchases to a Google Ads conversion
// action as offline conversions.
//
// # Data Manager API (the default)
//
// Since 1 April 2026 the Google Ads API refuses Customer Match uploads
// from developer tokens that had not used it before
// (CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE); Google's answer is the Data
// Manager API, https://datamanager.googleapis.com/v1. DataManager sends a
// batch's adds and removes as
//
//	POST <base>/audienceMembers:ingest
//	POST <base>/audienceMembers:remove
//	Authorization: Bearer <OAuth token, scope https://www.googleapis.com/auth/datamanager>
//
//	{"destinations":[{"loginAccount":{"accountId":"1112223333","accountType":"GOOGLE_ADS"},
//	                  "operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},
//	                  "productDestinationId":"<user list id>"}],
//	 "audienceMembers":[{"userData":{"userIdentifiers":[{"emailAddress":"<hex sha256>"},
//	                                                    {"phoneNumber":"<hex sha256>"}]},
//	                     "consent":{"adUserData":"CONSENT_GRANTED","adPersonalization":"CONSENT_GRANTED"}}],
//	 "encoding":"HEX"}
//	→ {"requestId":"…"}
//
// The field names are those of the v1 REST reference (Destination,
// ProductAccount, AudienceMember, UserData, UserIdentifier, Consent,
// Encoding). Values are hashed as its "Format user data" guide says:
// email_address lower-cased, whitespace removed, and for gmail.com and
// googlemail.com the dots before the @ removed; phone_number in E.164
// with its "+"; SHA-256, hex ("encoding": "HEX"). With all four of first
// and last name, country and postal code on the person's profile (looked
// up at delivery), a member also gets an "address" identifier
// (AddressInfo: givenName and familyName lower-cased, without punctuation,
// prefixes or suffixes, SHA-256; regionCode and postalCode not hashed;
// address.go). A request holds at most
// 10,000 members and a member at most 10 identifiers ("Limits and
// quotas"); a person with more is several members, never split over two
// requests. Consent is per member, from the person's "ads" consent at
// delivery (granted for a yes; a no since the add was queued holds it
// back); RemoveAudienceMembersRequest has no consent field. The requestId
// is kept in the "Audience Synced" outcome. A StatusPoller (status.go)
// asks GET <base>/requestStatus:retrieve?requestId= about every accepted
// request in the background, 30 minutes after it and then with
// exponential backoff, until it is SUCCESS, PARTIAL_SUCCESS or FAILED;
// the ids are kept in its bbolt bucket over restarts. FAILED makes each
// person of the request a dead letter (without identifiers: a retry
// looks them up) with the error reasons and counts. With StatusPolls,
// Deliver also asks inline before settling (off by default).
//
// Errors are google.rpc.Status bodies ({"error":{"code","message",
// "status","details":[ErrorInfo, BadRequest, RequestInfo]}}): 429
// RESOURCE_EXHAUSTED (the project's 300 requests a minute), 408, 409 and
// 5xx are retried; 400 INVALID_ARGUMENT, 401, 403 and other 4xx are dead
// letters. When every BadRequest field violation names a member
// ("audience_members[3]…"), only those members' messages are dead; the
// others are retried without them.
//
// OAuth (Credentials.Client): a service account key (JWT bearer grant) or
// a refresh token with its OAuth client, at Google's token endpoint or
// another (tests); the token is renewed before it expires.
//
// Conversions sends store purchases through events:ingest to a conversion
// action (productDestinationId), one Event per sale: transactionId the
// order id (Google drops a second conversion with the same one),
// eventTimestamp, userData, consent, currency, conversionValue,
// eventSource IN_STORE; at most 2,000 events a request.
//
// # Google Ads API (legacy, api: google_ads)
//
// Destination keeps the list through the Google Ads API's
// OfflineUserDataJobService (REST), for accounts still allowlisted for it: each batch of outbox messages becomes one job for its adds and
// one for its removes, each created, filled and run.
//
// It owns the wire format, the normalizing and hashing of identifiers, and
// the mapping of Google's answers to results. It does not queue, batch,
// retry or back off (the outbox in package channels does), check consent
// (an add is enqueued only with the consent it needs), create user lists,
// refresh OAuth tokens (give an HTTPClient that does, e.g. one from
// golang.org/x/oauth2, and leave AccessToken empty), nor wait for a job to
// finish: Google processes a job asynchronously, in minutes to hours.
//
// # Requests
//
// Every request carries
//
//	Authorization: Bearer <AccessToken>       (unless AccessToken is empty)
//	developer-token: <DeveloperToken>
//	login-customer-id: <LoginCustomerID>      (when set: a manager account)
//	Content-Type: application/json
//
// and a job is three calls (https://developers.google.com/google-ads/api/rest/reference/rest/v23/customers.offlineUserDataJobs):
//
//	POST <BaseURL>/customers/<CustomerID>/offlineUserDataJobs:create
//	{"job":{"type":"CUSTOMER_MATCH_USER_LIST",
//	        "customerMatchUserListMetadata":{"userList":"customers/<cid>/userLists/<id>"}}}
//	→ {"resourceName":"customers/<cid>/offlineUserDataJobs/<job>"}
//
//	POST <BaseURL>/customers/<cid>/offlineUserDataJobs/<job>:addOperations
//	{"operations":[{"create":{"userIdentifiers":[{"hashedEmail":"<sha256>"},
//	                                             {"hashedPhoneNumber":"<sha256>"}]}}],
//	 "enablePartialFailure":true}
//
//	POST <BaseURL>/customers/<cid>/offlineUserDataJobs/<job>:run
//	{}
//
// A removal job is the same with "remove" for "create". Adds and removes
// never share a job: the Customer Match guide says "Do not mix create and
// remove operations within the same OfflineUserDataJob. Doing so can
// result in a CONFLICTING_OPERATION error." With Config.ConsentGranted the
// add job's metadata also carries
// "consent":{"adUserData":"GRANTED","adPersonalization":"GRANTED"}, as the
// guide asks of create jobs since v15 ("For remove requests, consent is not
// needed").
//
// One operation is one person (UserData), with one UserIdentifier per
// address or number: hashed_email and hashed_phone_number are a oneof, and
// "to provide multiple identifiers for the same user … add separate
// UserIdentifier objects to the user_identifiers list" (UserIdentifier
// reference). A person with more than 20 identifiers, the most one
// UserData takes, is split over several operations. An addOperations call
// holds at most 100,000 identifiers (the AddOfflineUserDataJobOperations
// limit); more go in further calls to the same job, never one person
// across two calls.
//
// Values are the lower-case hex SHA-256 of the normalized identifier, as
// the UserIdentifier reference says: "For hashed_email … trim leading and
// trailing whitespace and convert all characters to lowercase. Phone
// numbers must be formatted in E.164 format (for example, +16502531234)
// before hashing." So "test@example.com" hashes to
// 973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b and
// "+1 650-555-1234" is hashed as "+16505551234". Dots in gmail.com and
// googlemail.com addresses are kept: the Customer Match guide says "You're
// not required to remove all periods (.) preceding the domain name in
// gmail.com and googlemail.com email addresses since they'll still be
// accepted" (removing them is a rule of enhanced conversions, another
// API).
//
// # Results
//
//   - Run accepted: each message of the job is delivered, with the outcome
//     "Audience Synced" {audience, destination: "google", op, job}.
//   - 5xx, 408, 409 (ABORTED: a concurrent modification), 429 (quota), a
//     network error or a timeout: a plain error, retried by the outbox,
//     for every message the failed call concerns — all of the job's when
//     creating or running it, those of one addOperations call otherwise.
//   - Any other 4xx (bad token or developer token, a list the customer
//     does not own): a channels.PermanentError for the same messages.
//   - An operation addOperations rejects under partial failure (say, a
//     malformed hash): a permanent error for its message alone; the rest
//     of the job still runs.
//   - A message whose payload does not decode, whose op is neither "add"
//     nor "remove", or whose person has no usable email and no phone
//     ("no identifiers") fails permanently without a request.
//
// # Order within a batch
//
// Messages come in outbox order. Of several messages for one person
// (Message.ProfileID, within one audience) the last wins: "add, remove" in
// one batch sends only the removal; the earlier ones are delivered with no
// request and no outcome. A message with no profile id is never merged.
// The add job runs before the remove job, but Google may process the two
// in parallel, so an identifier that two different people share and that
// one batch both adds and removes ends up in either state.
//
// # Duplicates
//
// Delivery is at least once: a retry after a timeout, or a crash between
// Google's answer to :run and the outbox marking the batch delivered,
// repeats the operations in a new job. That is safe: a Customer Match list
// is a set of the Google users the hashes match, so adding an identifier
// already in the list, or removing one that is not, leaves it unchanged. A
// job abandoned after a failed addOperations or run is never run and
// applies nothing.
//
// # Example
//
//	d, err := google.New(google.Config{
//		Name:           "google:retargeting",
//		CustomerID:     "123-456-7890",
//		UserList:       "customers/1234567890/userLists/987654321",
//		DeveloperToken: os.Getenv("GOOGLE_ADS_DEVELOPER_TOKEN"),
//		HTTPClient:     oauthClient, // refreshes the token itself
//		ConsentGranted: true,        // ads consent is opt-in in our config
//	})
//	if err != nil {
//		return err
//	}
//	results := d.Deliver(ctx, msgs) // one Result per message, in order
package google
