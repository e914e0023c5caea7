package journeys

import (
	"strings"
	"testing"
)

// The journeys' sidecars of a profile share one key space beside the
// profile's record: no name may be a prefix of another, or one reads the
// other's records (two features once both took "h").
func TestSidecarNamesApart(t *testing.T) {
	names := map[string]string{
		"active": sidecarActive, "entry": sidecarEntry,
		"send hours": sidecarSendHours, "experiment (before the record)": sidecarExperiment, "experiment ledger (before the record)": sidecarExpLedger,
		"experiment record": sidecarExpRecord,
	}
	for a, x := range names {
		for b, y := range names {
			if a != b && strings.HasPrefix(y, x) {
				t.Errorf("sidecar %s (%q) is a prefix of %s (%q)", a, x, b, y)
			}
		}
	}
}
