package profiles

import (
	"fmt"
	"slices"
	"strings"
)

// Source trust levels (SourceConfig.Trust).
const (
	// TrustClient is a source whose write key is public: it ships in a
	// web page or an app, so anyone may send with it.
	TrustClient = "client"
	// TrustServer is a source whose write key stays on machines the
	// business runs: the tills, the shop's backend, back-office jobs.
	TrustServer = "server"
)

// ServerOnlyEvents are the track events accepted only from server
// sources, unless a client source lists them in allow_events: they move
// money, points and tiers, so a public key must not be able to fake them.
func ServerOnlyEvents() []string { return []string{"Order Completed", "Order Refunded"} }

// Trust returns the trust of a source: TrustClient unless the config says
// server (an unknown source is a client).
func (s *Sources) Trust(source string) string {
	if s.trust[source] == TrustServer {
		return TrustServer
	}
	return TrustClient
}

// CheckTrust refuses the first event that the source's trust does not
// allow: a server-only event from a client source. batch says whether the
// events came in a batch, so the error names the index.
func (s *Sources) CheckTrust(source string, batch bool, events []*Event) error {
	if s.Trust(source) == TrustServer {
		return nil
	}
	for i, e := range events {
		if e.Type != TypeTrack {
			continue
		}
		// Names are compared loosely, so that "order completed" cannot
		// slip past into a rule written with another spelling.
		name := strings.TrimSpace(e.Event)
		restricted := slices.ContainsFunc(ServerOnlyEvents(), func(n string) bool { return strings.EqualFold(n, name) })
		if !restricted || slices.ContainsFunc(s.allowed[source], func(n string) bool { return strings.EqualFold(n, name) }) {
			continue
		}
		err := invalid("event", "%q is accepted only from server sources; source %q is a client source (sources[].allow_events to allow it)", e.Event, source)
		if batch {
			return within(fmt.Sprintf("batch[%d]", i), err)
		}
		return err
	}
	return nil
}
