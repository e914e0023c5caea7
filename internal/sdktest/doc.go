// Package sdktest runs the cartera binary as a separate process for
// black-box tests: Build compiles it once (from TestMain), Start runs
// `cartera serve` on a random port of 127.0.0.1 with a fresh bbolt file,
// and the returned Server kills (SIGKILL), stops (SIGTERM) and restarts it
// on the same file.
//
// Its own test drives the real Segment Node SDK (@segment/analytics-node,
// pinned in package.json and package-lock.json) against the gateway. That
// test needs Node.js and `npm ci` in this folder; it skips without
// node_modules unless CARTERA_SDK_TEST=1 is set, when it fails instead.
//
//	func TestMain(m *testing.M) {
//		dir, _ := os.MkdirTemp("", "cartera-bin")
//		bin, err := sdktest.Build(dir)
//		...
//	}
//
//	srv := sdktest.Start(t, bin, sdktest.Options{})
//	p := srv.MustProfile(t, "email:ana@example.com", 100)
package sdktest
