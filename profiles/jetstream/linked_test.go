package jetstream

import (
	"fmt"
	"testing"

	"cartera/profiles"
)

// linked groups a batch's events by shared identifiers, transitively, in
// order within each group; an alias's previousId counts as both the
// kinds it may be.
func TestLinked(t *testing.T) {
	reader := profiles.NewIdentifierReader(profiles.DefaultIdentityConfig())
	ev := func(typ, user, anon, prev string) *profiles.Event {
		return &profiles.Event{Type: typ, UserID: user, AnonymousID: anon, PreviousID: prev}
	}
	for _, c := range []struct {
		name   string
		events []*profiles.Event
		want   string
	}{
		{"strangers", []*profiles.Event{ev("track", "a", "", ""), ev("track", "b", "", ""), ev("track", "", "x", "")}, "[[0] [1] [2]]"},
		{"one person", []*profiles.Event{ev("track", "a", "", ""), ev("track", "a", "", "")}, "[[0 1]]"},
		{"linked by an identify, in order", []*profiles.Event{
			ev("track", "", "x", ""), ev("track", "b", "", ""), ev("identify", "a", "x", ""), ev("track", "a", "", ""), ev("track", "c", "", ""),
		}, "[[0 2 3] [1] [4]]"},
		{"chained", []*profiles.Event{
			ev("track", "", "x", ""), ev("track", "a", "", ""), ev("identify", "b", "y", ""), ev("identify", "a", "y", ""), ev("identify", "", "x", ""),
		}, "[[0 4] [1 2 3]]"},
		{"previousId, either kind", []*profiles.Event{
			ev("track", "", "old", ""), ev("track", "old", "", ""), ev("alias", "new", "", "old"), ev("track", "new", "", ""),
		}, "[[0 1 2 3]]"},
	} {
		ids := make([][]profiles.Identifier, len(c.events))
		for i, e := range c.events {
			ids[i] = reader.Identifiers(e)
		}
		if got := fmt.Sprint(linked(c.events, ids)); got != c.want {
			t.Errorf("%s: groups %s, want %s", c.name, got, c.want)
		}
	}
}
