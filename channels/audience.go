package channels

import (
	"encoding/json"
	"fmt"
)

// DecodeAudience reads an ad audience change; what cannot be read never
// will be, so its errors are permanent. who starts error messages ("meta");
// fallback is the audience when the payload names none.
func DecodeAudience(who, fallback string, m *Message) (AudiencePayload, error) {
	var p AudiencePayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return p, Permanent(fmt.Errorf("%s: decode audience payload: %w", who, err))
	}
	if p.Op != "add" && p.Op != "remove" {
		return p, Permanent(fmt.Errorf("%s: audience op %q: want add or remove", who, p.Op))
	}
	if p.Audience == "" {
		p.Audience = fallback
	}
	return p, nil
}

// LatestPerPerson prepares each message of a batch of audience changes and
// keeps, of several for the same person and audience, only the last one
// prepared: the earlier are delivered by it and need no request of their
// own (their Result stays empty). A message prepare refuses gets the error
// in out. Messages without a profile id are never merged.
func LatestPerPerson[T any](msgs []*Message, out []Result, prepare func(i int, m *Message) (audience string, v T, err error)) []T {
	type kept struct {
		v    T
		gone bool
	}
	people := make([]kept, 0, len(msgs))
	last := make(map[string]int, len(msgs)) // audience 0x00 profile id → index in people
	for i, m := range msgs {
		audience, v, err := prepare(i, m)
		if err != nil {
			out[i].Err = err
			continue
		}
		if m.ProfileID != "" {
			key := audience + "\x00" + m.ProfileID
			if j, ok := last[key]; ok {
				people[j].gone = true
			}
			last[key] = len(people)
		}
		people = append(people, kept{v: v})
	}
	res := make([]T, 0, len(people))
	for _, p := range people {
		if !p.gone {
			res = append(res, p.v)
		}
	}
	return res
}
