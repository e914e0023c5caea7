package console

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// MaskEmail keeps the first character of the local part and the domain:
// ana@example.com → a***@example.com.
func MaskEmail(v string) string {
	at := strings.LastIndexByte(v, '@')
	if at < 1 {
		return maskOther(v)
	}
	return v[:1] + "***" + v[at:]
}

// MaskPhone keeps the country code and the first and last digits of the
// national number: +34600111221 → +34 6** *** **1.
func MaskPhone(v string) string {
	n, err := phonenumbers.Parse(v, "")
	if err != nil {
		return maskOther(v)
	}
	nat := fmt.Sprint(n.GetNationalNumber())
	if len(nat) < 3 {
		return fmt.Sprintf("+%d ***", n.GetCountryCode())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "+%d ", n.GetCountryCode())
	for i := range len(nat) {
		if i > 0 && (i-1)%3 == 2 {
			b.WriteByte(' ')
		}
		switch i {
		case 0, len(nat) - 1:
			b.WriteByte(nat[i])
		default:
			b.WriteByte('*')
		}
	}
	return b.String()
}

// maskOther keeps two characters of any other identifier.
func maskOther(v string) string {
	r := []rune(v)
	if len(r) <= 4 {
		return "***"
	}
	return string(r[:2]) + "***"
}

// MaskIdentifier masks an identifier's value by its kind; profile ids,
// internal and random, are shown.
func MaskIdentifier(kind, value string) string {
	switch kind {
	case "profile_id":
		return value
	case "email":
		return MaskEmail(value)
	case "phone":
		return MaskPhone(value)
	}
	if looksLikeEmail(value) {
		return MaskEmail(value)
	}
	return maskOther(value)
}

var emailLike = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)
var phoneLike = regexp.MustCompile(`^\+?[0-9 ().-]{7,20}$`)

func looksLikeEmail(s string) bool { return emailLike.MatchString(strings.TrimSpace(s)) }

// personalKeys are trait and property names whose values name a person.
var personalKeys = []string{"email", "phone", "name", "address", "street", "birth", "loyalty_card", "ip", "user_id", "userid", "anonymous", "card", "zip", "postal"}

func personalKey(k string) bool {
	k = strings.ToLower(k)
	for _, p := range personalKeys {
		if strings.Contains(k, p) {
			return true
		}
	}
	return false
}

// maskValue masks a trait or property for a viewer: strings under a
// personal key or shaped like an email or a phone number, inside maps and
// lists too.
func maskValue(key string, v any) any {
	switch t := v.(type) {
	case string:
		switch {
		case looksLikeEmail(t):
			return MaskEmail(t)
		case phoneLike.MatchString(t) && strings.HasPrefix(strings.TrimSpace(t), "+"):
			return MaskPhone(t)
		case personalKey(key):
			return maskOther(t)
		case strings.Contains(t, "@"):
			return emailIn.ReplaceAllStringFunc(t, MaskEmail)
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = maskValue(k, x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = maskValue(key, x)
		}
		return out
	case bool, nil:
		return t
	case float64:
		if personalKey(key) {
			return "***"
		}
		return t
	}
	if personalKey(key) {
		return "***"
	}
	return v
}
