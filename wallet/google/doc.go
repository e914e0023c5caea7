// Package google builds Google Wallet loyalty passes: the LoyaltyClass and
// LoyaltyObject resources of the Google Wallet API, the signed
// "Save to Google Wallet" link, and a small client that updates saved
// objects (PATCH) and adds messages to them (addMessage).
//
// It owns the wire formats and the limits Google documents. It does not own
// which profile gets which pass, the storage of issued passes, the OAuth
// access token for the REST API (the caller supplies Client.Token), nor the
// HTTP routes: cmd/cartera wires those.
//
// Formats follow the Google Wallet REST reference (v1):
//
//   - LoyaltyClass:  https://developers.google.com/wallet/reference/rest/v1/loyaltyclass
//   - LoyaltyObject: https://developers.google.com/wallet/reference/rest/v1/loyaltyobject
//   - Save JWT:      https://developers.google.com/wallet/reference/rest/v1/Jwt
//   - addMessage:    https://developers.google.com/wallet/reference/rest/v1/loyaltyobject/addmessage
//   - push limits:   https://developers.google.com/wallet/generic/use-cases/trigger-push-notifications
//
// The rewards tier (rewardsTier, rewardsTierLabel) and the background colour
// (hexBackgroundColor) are fields of the LoyaltyClass, not of the object.
// A per-person tier therefore travels on the object as a text module with the
// id TierModuleID (see TierModule); a program that wants a different colour
// per tier uses one class per tier and sets the object's classId.
//
// A short example:
//
//	sa, err := google.ParseServiceAccount(keyJSON)
//	if err != nil { ... }
//	obj := google.LoyaltyObject{
//		ID:            "3388000000012345678.cartera-42",
//		ClassID:       "3388000000012345678.cartera-loyalty",
//		State:         google.StateActive,
//		AccountID:     "42",
//		AccountName:   "Ada Lovelace",
//		LoyaltyPoints: &google.LoyaltyPoints{Label: "Points", Balance: google.IntBalance(120)},
//		Barcode:       &google.Barcode{Type: google.BarcodeQRCode, Value: "cartera-42"},
//	}
//	link, err := google.SaveURL(sa.Key, sa.Email, []string{"https://shop.example"}, []google.LoyaltyObject{obj}, time.Now())
package google
