// Package apns sends Apple Wallet pass update pushes through the Apple
// Push Notification service, with github.com/sideshow/apns2.
//
// A pass update push is the empty JSON object {} POSTed to
// /3/device/<push token>, with the pass type identifier as apns-topic, over
// TLS whose client certificate is the pass type certificate (the one that
// signs the .pkpass). The device then asks the PassKit web service which
// passes changed and fetches them.
//
// It owns the connection to APNs ([Client]) and the reading of its answers
// ([Result]): [Result.Unregistered] says the registration should be
// deleted, [Result.Retryable] that the push may be tried again later.
//
// It does not know which devices hold which pass, store registrations,
// deduplicate tokens, schedule retries, log or count: the caller does,
// from the results. It does not sign passes (wallet/apple does).
//
// One [Client] keeps one HTTP/2 connection open and carries up to
// [Config.Concurrency] pushes on it at once, each its own stream; pushes
// beyond the server's MAX_CONCURRENT_STREAMS wait for a stream instead of
// opening another connection. The first push on a new connection goes
// alone, so that the server's limit is known before the others follow. A
// push whose connection fails is tried once more on a new one; when no
// connection can be opened (APNs refusing the certificate, say), the
// results wrap [ErrNoConnection] and the rest of the call gives up
// rather than dial once per token.
//
//	cfg := apns.DefaultConfig()
//	cfg.Topic = chain.PassTypeID
//	cfg.Certificate = tls.Certificate{
//		Certificate: [][]byte{chain.Cert.Raw, chain.WWDR.Raw},
//		PrivateKey:  chain.Key,
//		Leaf:        chain.Cert,
//	}
//	client, err := apns.New(cfg)
//	if err != nil {
//		return err
//	}
//	defer client.Close()
//	for _, r := range client.Push(ctx, tokens) {
//		switch {
//		case r.Err == nil:
//		case r.Unregistered():
//			// delete the registration of r.Token, unless it came after r.Timestamp
//		case r.Retryable():
//			// push r.Token again later
//		}
//	}
package apns
