package profiles

import (
	"errors"
	"slices"
	"testing"
)

func TestSearchPrefix(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(
		identify("m1", user("u-ana"), traits("email", "Ana@Example.com", "phone", "+34 600 111 221")),
		identify("m2", user("u-anabel"), traits("email", "anabel@example.com")),
		identify("m3", user("u-bo"), traits("email", "bo@example.com", "phone", "+34 611 000 000")),
	)
	ana := ts.lookup(KindUserID, "u-ana").ID
	values := func(ms []IdentityMatch) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Value)
		}
		return out
	}
	tests := []struct {
		kind, prefix string
		limit        int
		want         []string
	}{
		{KindEmail, "ANA", 10, []string{"ana@example.com", "anabel@example.com"}},
		{KindEmail, "ana@", 10, []string{"ana@example.com"}},
		{KindEmail, "an", 1, []string{"ana@example.com"}},
		{KindEmail, "zed", 10, nil},
		{KindPhone, "+34 6", 10, []string{"+34600111221", "+34611000000"}},
		{KindPhone, "+346001", 10, []string{"+34600111221"}},
		{KindUserID, "u-ana", 10, []string{"u-ana", "u-anabel"}},
		{KindProfileID, ana[:20], 10, []string{ana}},
	}
	for _, tc := range tests {
		got, err := ts.SearchPrefix(tc.kind, tc.prefix, tc.limit)
		if err != nil {
			t.Fatalf("%s %q: %v", tc.kind, tc.prefix, err)
		}
		if !slices.Equal(values(got), tc.want) {
			t.Errorf("%s %q = %v, want %v", tc.kind, tc.prefix, values(got), tc.want)
		}
	}
	if got, _ := ts.SearchPrefix(KindEmail, "ana@", 10); len(got) != 1 || got[0].ProfileID != ana {
		t.Errorf("match %+v, want Ana's profile %s", got, ana)
	}
	if _, err := ts.SearchPrefix("shoe_size", "4", 10); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := ts.SearchPrefix(KindEmail, "  ", 10); err == nil {
		t.Error("an empty prefix lists everyone")
	}
}
