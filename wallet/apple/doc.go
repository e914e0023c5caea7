// Package apple builds signed Apple Wallet passes (.pkpass files).
//
// It owns the pass.json model ([Pass]), the signing chain ([Chain]) and the
// archive format ([Build]): pass.json, a manifest.json holding the SHA-1 of
// every file, and a detached PKCS#7 signature over the manifest made with
// the pass type certificate, carrying Apple's WWDR intermediate.
//
// It does not store passes, serve the PassKit web service or send pushes;
// those build on this package.
//
// A real chain comes from Apple: a pass type ID certificate and its key from
// the developer portal, and the WWDR intermediate, loaded with [LoadChain].
// For development, [DevChain] makes a look-alike chain under a folder
// (the contract's <data folder>/wallet-dev/). Passes signed with it have the
// right shape and verify against its ca.pem, but will NOT install on a
// device: Wallet trusts only Apple's own WWDR intermediate.
//
//	chain, err := apple.DevChain(filepath.Join(dataDir, "wallet-dev"), time.Now())
//	if err != nil {
//		return err
//	}
//	pkpass, err := apple.Build(pass, map[string][]byte{"icon.png": icon}, chain, time.Now())
package apple
