package google

import "time"

// AdsAPISunsets are the Google Ads API sunset dates of the legacy path's
// versions ("Starting on this date, all vNN API requests will begin to
// fail"). Published dates, from Google's sunset reminders on the Ads
// Developer Blog: v17 June 4, 2025; v18 August 20, 2025; v19 February 11,
// 2026; v20 June 10, 2026; v21 August 5, 2026; v22 October 7, 2026.
//
// No sunset date is published yet for v23 (DefaultBaseURL's version) and
// later: the dates below are the "Projected sunset" months of Google's
// tentative 2026 release schedule ("More frequent releases coming for the
// Google Ads API", September 4, 2025: V23, V23_1, V23_2 February 2027;
// V24, V24_1, V24_2 May 2027; V25, V25_1, V25_2 August 2027; V26
// November 2027), "only estimates" that "may be adjusted". A month alone
// is taken as its first day, so warnings come early rather than late;
// replace them with the reminder's date once Google publishes it.
var AdsAPISunsets = map[string]time.Time{
	"v17":   time.Date(2025, 6, 4, 0, 0, 0, 0, time.UTC),
	"v18":   time.Date(2025, 8, 20, 0, 0, 0, 0, time.UTC),
	"v19":   time.Date(2026, 2, 11, 0, 0, 0, 0, time.UTC),
	"v19_1": time.Date(2026, 2, 11, 0, 0, 0, 0, time.UTC),
	"v20":   time.Date(2026, 6, 10, 0, 0, 0, 0, time.UTC),
	"v21":   time.Date(2026, 8, 5, 0, 0, 0, 0, time.UTC),
	"v22":   time.Date(2026, 10, 7, 0, 0, 0, 0, time.UTC),
	// Projected (tentative), see above.
	"v23":   time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC),
	"v23_1": time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC),
	"v23_2": time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC),
	"v24":   time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC),
	"v24_1": time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC),
	"v24_2": time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC),
	"v25":   time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC),
	"v25_1": time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC),
	"v25_2": time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC),
	"v26":   time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC),
}
