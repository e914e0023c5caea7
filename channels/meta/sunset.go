package meta

import (
	"strconv"
	"strings"
	"time"
)

// Sunsets are the published expiry dates of Marketing API versions we
// found in Meta's references. Meta supports a version "for at least 90
// days" after the next one is released; the "Marketing API – Versioning"
// page gives as example "Marketing API version v17.0 released on May
// 23rd, 2023, and Marketing API version v16.0 expired on February 6th,
// 2024". We found no published date for later versions; Older covers
// them.
var Sunsets = map[string]time.Time{
	"v16.0": time.Date(2024, 2, 6, 0, 0, 0, 0, time.UTC),
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
