package meta

import (
	"strconv"
	"strings"
	"time"
)

// Sunsets are the published expiration dates of Marketing API versions,
// from Meta's "Marketing API version history" table
// (developers.facebook.com/documentation/ads-commerce/marketing-api/
// marketing-api-changelog/versions). Meta keeps a version working "for at
// least 90 days" after the next one is released.
//
// DefaultVersion, v26.0 (released July 29, 2026), has no expiration date
// yet: the table says "TBD" for it and for v27.0 (released November 4,
// 2026), so no warning can name one. Older covers it: a version older
// than DefaultVersion without a date here is warned about all the same.
var Sunsets = map[string]time.Time{
	"v16.0": time.Date(2024, 2, 6, 0, 0, 0, 0, time.UTC),
	"v17.0": time.Date(2024, 5, 14, 0, 0, 0, 0, time.UTC),
	"v18.0": time.Date(2024, 8, 13, 0, 0, 0, 0, time.UTC),
	"v19.0": time.Date(2025, 2, 4, 0, 0, 0, 0, time.UTC),
	"v20.0": time.Date(2025, 5, 6, 0, 0, 0, 0, time.UTC),
	"v21.0": time.Date(2025, 9, 9, 0, 0, 0, 0, time.UTC),
	"v22.0": time.Date(2026, 2, 19, 0, 0, 0, 0, time.UTC),
	"v23.0": time.Date(2026, 6, 9, 0, 0, 0, 0, time.UTC),
	"v24.0": time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC),
	"v25.0": time.Date(2027, 2, 23, 0, 0, 0, 0, time.UTC),
}

// Older reports whether version is older than DefaultVersion, the one
// these requests were written for ("v21.0" is; "v26.0" is not).
func Older(version string) bool {
	return number(version) < number(DefaultVersion)
}

func number(v string) float64 {
	f, err := strconv.ParseFloat(strings.TrimPrefix(v, "v"), 64)
	if err != nil {
		return 0
	}
	return f
}
