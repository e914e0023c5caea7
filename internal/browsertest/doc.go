// Package browsertest drives the real browser SDKs of Segment
// (@segment/analytics-next) and RudderStack (@rudderstack/analytics-js),
// loaded from their npm packages in this folder (package.json and
// package-lock.json pin them; no CDN), in Debian's headless Chromium
// against a `cartera serve` process, from pages on another loopback origin.
//
// It holds only tests. They need the chromium binary and `npm ci` here;
// they skip without them unless CARTERA_BROWSER_TEST=1 is set (make test
// sets it), when a missing browser or package is a failure.
package browsertest
