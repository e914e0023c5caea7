package google

import (
	"strings"
	"unicode"

	"cartera/channels"
)

// addressInfo is the Data Manager AddressInfo, a UserIdentifier's
// "address": the names hashed, region and postal code as they are. The
// "Format user data" guide
// (https://developers.google.com/data-manager/api/get-started/formatting):
// given_name and family_name "Convert to lowercase", "Don't include
// prefixes such as Mrs." / "suffixes such as Jr.", "Trim leading and
// trailing whitespace", "Hash using the SHA-256 algorithm"; region_code
// "A two-character ISO-3166-1 alpha-2 code", "Don't hash region_code";
// postal_code "Trim leading and trailing whitespace", "Don't hash
// postal_code". The AddressInfo reference adds for the names "all
// lowercase, with no punctuation". All four are required.
type addressInfo struct {
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
	RegionCode string `json:"regionCode"`
	PostalCode string `json:"postalCode"`
}

// Address is what the address identifier is made of, raw.
type Address struct {
	FirstName, LastName, Country, PostalCode string
}

// ProfileAddress reads a person's address from their traits: first_name,
// last_name, country and postal_code, or Segment's reserved address trait
// ({"country", "postal_code"} or "postalCode").
func ProfileAddress(p *channels.Profile) Address {
	if p == nil {
		return Address{}
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	a := Address{FirstName: str(p.Traits, "first_name"), LastName: str(p.Traits, "last_name"),
		Country: str(p.Traits, "country"), PostalCode: str(p.Traits, "postal_code")}
	if addr, ok := p.Traits["address"].(map[string]any); ok {
		if a.Country == "" {
			a.Country = str(addr, "country")
		}
		if a.PostalCode == "" {
			a.PostalCode = firstNonEmpty(str(addr, "postal_code"), str(addr, "postalCode"))
		}
	}
	return a
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// identifier is the address UserIdentifier, nil unless all four parts
// are known and usable.
func (a Address) identifier() *userIdentifier {
	given, family := DataManagerGivenName(a.FirstName), DataManagerFamilyName(a.LastName)
	region, postal := DataManagerRegion(a.Country), DataManagerPostalCode(a.PostalCode)
	if given == "" || family == "" || region == "" || postal == "" {
		return nil
	}
	return &userIdentifier{Address: &addressInfo{GivenName: sha256Hex(given), FamilyName: sha256Hex(family), RegionCode: region, PostalCode: postal}}
}

// Words left out of names: prefixes of a given name, suffixes of a family
// name (compared without their punctuation).
var (
	namePrefixes = map[string]bool{"mr": true, "mrs": true, "ms": true, "miss": true, "mx": true, "dr": true}
	nameSuffixes = map[string]bool{"jr": true, "sr": true, "ii": true, "iii": true, "iv": true}
)

// DataManagerGivenName normalizes a given name before hashing: lower
// case, no punctuation, no leading or trailing whitespace (words keep one
// space between them), without a prefix (Mr, Mrs, Ms, Miss, Mx, Dr) when
// another word is left: "  Mrs. Ana María " → "ana maría".
func DataManagerGivenName(s string) string { return dmName(s, namePrefixes, false) }

// DataManagerFamilyName is DataManagerGivenName for a family name, without
// a suffix (Jr, Sr, II, III, IV): "O'Brien-Smith Jr." → "obriensmith".
func DataManagerFamilyName(s string) string { return dmName(s, nameSuffixes, true) }

func dmName(s string, drop map[string]bool, last bool) string {
	var words []string
	for _, w := range strings.Fields(strings.ToLower(s)) {
		var b strings.Builder
		for _, r := range w {
			if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) {
				b.WriteRune(r)
			}
		}
		if b.Len() > 0 {
			words = append(words, b.String())
		}
	}
	if len(words) > 1 {
		if last && drop[words[len(words)-1]] {
			words = words[:len(words)-1]
		} else if !last && drop[words[0]] {
			words = words[1:]
		}
	}
	return strings.Join(words, " ")
}

// DataManagerRegion is a country as an ISO 3166-1 alpha-2 code, upper
// case ("es" → "ES"); "" for anything else.
func DataManagerRegion(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return ""
	}
	return s
}

// DataManagerPostalCode trims a postal code; "" if it holds nothing but
// whitespace or is longer than any postal code (16 bytes).
func DataManagerPostalCode(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 16 {
		return ""
	}
	return s
}
