package profiles

import (
	"bytes"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"
)

// IdentityMatch is one identifier found by a prefix search, with the live
// profile that holds it.
type IdentityMatch struct {
	Kind      string `json:"kind"`
	Value     string `json:"value"`
	ProfileID string `json:"profile_id"`
}

// MaxSearch bounds the matches one prefix search returns.
const MaxSearch = 200

// SearchPrefix returns up to limit identifiers of a kind whose normalized
// value starts with prefix, in key order, read from the identity index
// (kind 0x00 value), so the cost is that of the matches read, not of the
// number of profiles. The prefix is normalized as far as a partial value
// can be: lower case for emails and "lower" kinds, digits (and a leading
// +) for phones, digits for "digits" kinds. An empty prefix is refused: it
// would list everyone.
func (s *Store) SearchPrefix(kind, prefix string, limit int) ([]IdentityMatch, error) {
	if kind != KindProfileID && !s.res.known[kind] {
		return nil, fmt.Errorf("%w %q", ErrUnknownKind, kind)
	}
	prefix = s.normalizePrefix(kind, prefix)
	if prefix == "" {
		return nil, fmt.Errorf("search %s: want a prefix of at least one character", kind)
	}
	if limit < 1 || limit > MaxSearch {
		limit = MaxSearch
	}
	var out []IdentityMatch
	err := s.db.View(func(tx *bbolt.Tx) error {
		if kind == KindProfileID {
			c := tx.Bucket(bucketProfiles).Cursor()
			for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)) && len(out) < limit; k, _ = c.Next() {
				if len(k) == idLen {
					out = append(out, IdentityMatch{Kind: kind, Value: string(k), ProfileID: string(k)})
				}
			}
			return nil
		}
		p := identityKey(Identifier{Kind: kind, Value: prefix})
		c := tx.Bucket(bucketIdentities).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, v = c.Next() {
			out = append(out, IdentityMatch{Kind: kind, Value: string(k[len(kind)+1:]), ProfileID: string(v)})
		}
		return nil
	})
	return out, err
}

func (s *Store) normalizePrefix(kind, prefix string) string {
	prefix = strings.TrimSpace(prefix)
	how := ""
	switch kind {
	case KindEmail:
		how = "lower"
	case KindPhone:
		plus := strings.HasPrefix(prefix, "+")
		prefix = digits(prefix)
		if plus && prefix != "" {
			prefix = "+" + prefix
		}
		return prefix
	default:
		for _, k := range s.res.kinds {
			if k.name == kind {
				how = k.normalize
			}
		}
	}
	switch how {
	case "lower":
		return strings.ToLower(prefix)
	case "digits":
		return digits(prefix)
	}
	return prefix
}
