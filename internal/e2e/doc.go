// Package e2e holds the end-to-end test of the seed scenarios: the real
// binary, serving the examples, driven by `cartera demo` over real HTTP,
// with local stand-ins for everything outside (an SMTP relay, the Meta and
// Google Ads audience APIs, APNs over HTTP/2). It has no code of its own.
package e2e
