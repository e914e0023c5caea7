package journeys

// Reading the policy ad audiences that journeys fill (audience steps):
// who is in one, which journeys hold them there, and how many are in
// each. The members are journey_ad_members' keys (audience 0x00 profile
// id), so they come in profile id order.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// ErrUnknownAdAudience is returned for an audience the policies file does
// not declare under ad_audiences.
var ErrUnknownAdAudience = errors.New("unknown ad audience")

// AdMember is a person in a policy ad audience.
type AdMember struct {
	ProfileID string `json:"profile_id"`
	// Holds are the journey instances holding the person in the audience;
	// the person leaves it when the last lets go.
	Holds []AdHold `json:"holds"`
}

// AdHold is one journey instance holding a person in an ad audience.
type AdHold struct {
	// Journey is the instance's journey; "" for a hold no instance names
	// (an earlier version's add, or an instance that ended holding).
	Journey string `json:"journey,omitempty"`
	// Step is where the instance stands now.
	Step string `json:"step,omitempty"`
}

// AdMembers pages through a policy ad audience's members in profile id
// order, after the given id; next is "" on the last page.
func (e *Engine) AdMembers(audience, after string, limit int) (members []AdMember, next string, err error) {
	if !slices.Contains(e.Set().Policy.AdAudienceNames(), audience) {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownAdAudience, audience)
	}
	limit = max(limit, 1)
	err = e.db.View(func(tx *bbolt.Tx) error {
		prefix := adMemberKey(audience, "")
		c := tx.Bucket(bucketAdMembers).Cursor()
		k, v := c.Seek(adMemberKey(audience, after))
		if after != "" && k != nil && bytes.Equal(k, adMemberKey(audience, after)) {
			k, v = c.Next()
		}
		insts := tx.Bucket(bucketInstances)
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(members) == limit {
				next = members[len(members)-1].ProfileID
				return nil
			}
			m := AdMember{ProfileID: string(k[len(prefix):])}
			for _, id := range decodeHolders(v) {
				var h AdHold
				if raw := insts.Get(u64(id)); id != legacyHolder && raw != nil {
					var in Instance
					if err := decodeInstance(raw, &in); err != nil {
						return fmt.Errorf("decode journey instance %d: %w", id, err)
					}
					h = AdHold{Journey: in.Journey, Step: in.Step}
				}
				m.Holds = append(m.Holds, h)
			}
			members = append(members, m)
		}
		return nil
	})
	return members, next, err
}

// AdAudienceSizes counts the members of each policy ad audience in force.
// It reads every member's key: a count per minute (the console's
// samples) of audiences of up to a few hundred thousand people.
func (e *Engine) AdAudienceSizes() (map[string]int64, error) {
	names := e.Set().Policy.AdAudienceNames()
	out := make(map[string]int64, len(names))
	err := e.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketAdMembers).Cursor()
		for _, name := range names {
			prefix := adMemberKey(name, "")
			var n int64
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			out[name] = n
		}
		return nil
	})
	return out, err
}
