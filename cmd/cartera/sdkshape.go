package main

import (
	"maps"

	"cartera/profiles"
)

// liftContextTraits gives an identify that carries its traits only in
// context.traits, as RudderStack's browser SDK sends them, those traits as
// its own: the profile gets them as from a Segment identify. An identify
// with traits of its own keeps them.
func liftContextTraits(events []*profiles.Event) {
	for _, e := range events {
		if e.Type != profiles.TypeIdentify || len(e.Traits) > 0 {
			continue
		}
		if t, ok := e.Context["traits"].(map[string]any); ok && len(t) > 0 {
			e.Traits = maps.Clone(t)
		}
	}
}
