// Package rules compiles and evaluates every condition marketers write:
// the one CEL environment (Env) with Cartera's declared types, rule files in
// YAML with errors mapped to file:line:col, computed traits maintained
// incrementally as events commit, and real-time audiences.
//
// It reads profiles and events (package profiles) and knows nothing of
// journeys, channels or wallets; those subscribe to audience changes.
//
// Conditions see these variables:
//
//	profile   cartera.Profile: id, traits, computed, consent, identities, audiences, created_at, last_seen_at
//	event     cartera.Event: name, type, source, properties, context, traits, timestamp, user_id, anonymous_id
//	trigger   cartera.Event: the event that started a journey instance
//	now       timestamp
//
// and these helpers:
//
//	days_since(profile.computed.last_order_at) > 30
//	has_consent("email")
//	in_audience("vip")
//	event_count("Order Completed", duration("24h")) >= 2
package rules
