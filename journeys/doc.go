// Package journeys is the journey engine: journey files (YAML with CEL
// conditions compiled in the rules environment), durable instances and
// timers in bbolt, cron schedules, send-time policy (consent, quiet hours,
// frequency caps, cross-journey suppression and priority), and the outbox
// of actions for the channels and wallet packages to deliver.
//
// The engine is a profiles.Processor placed after the rules engine: an
// event's triggers, wait_fors and exit_whens are evaluated in the commit
// that stores the event, so a purchase acknowledged before a send falls
// due ends the journey before the send can happen. Timers fire from
// FireDue, each in the commit that removes it; every effect of a step is
// keyed by (journey, version, instance, step) and recorded once.
//
// simulate runs this very engine over a temporary store with a virtual
// clock (see Simulate).
//
// It does not deliver anything: channels read the outbox.
package journeys
