package google

import "time"

// AdsAPISunsets are the Google Ads API sunset dates of the legacy path's
// versions, from "Deprecation and sunset"
// (https://developers.google.com/google-ads/api/docs/sunset-dates): v18
// "October 16, 2024 | June 2025 | August 2025"; v19 and v19.1 "February
// 2026 (tentative)"; v20 "June 2026 (tentative)". A month alone is taken
// as its first day, so warnings come early rather than late. We found no
// published date for v21 and later.
var AdsAPISunsets = map[string]time.Time{
	"v18":   time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC),
	"v19":   time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
	"v19_1": time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
	"v20":   time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
}
