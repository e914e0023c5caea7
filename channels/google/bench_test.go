package google

import (
	"encoding/json"
	"fmt"
	"testing"

	"cartera/channels"
)

// BenchmarkPlan1000 measures what Deliver does before the network: decode,
// normalize and hash 1,000 people (an address and a number each) and encode
// the addOperations body.
func BenchmarkPlan1000(b *testing.B) {
	d, err := New(Config{Name: "google:vip", CustomerID: "1234567890", UserList: "customers/1234567890/userLists/42",
		DeveloperToken: "dev", AccessToken: "tok"})
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*channels.Message, 1000)
	for i := range msgs {
		p, _ := json.Marshal(channels.AudiencePayload{Audience: "vip", Op: "add",
			Emails: []string{fmt.Sprintf(" Person.%d@Example.com", i)}, Phones: []string{fmt.Sprintf("+34 600 %06d", i)}})
		msgs[i] = &channels.Message{ProfileID: fmt.Sprintf("p%d", i), Payload: p}
	}
	out := make([]channels.Result, len(msgs))
	b.ReportAllocs()
	for b.Loop() {
		adds, _ := d.plan(msgs, out)
		req, _ := addBody("add", adds)
		if _, err := json.Marshal(req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		" Test@Example.COM\t": "test@example.com",
		"John.Doe@GMail.com":  "john.doe@gmail.com", // dots stay for Customer Match
		"no-at-sign":          "",
		"":                    "",
	} {
		if got := normEmail(in); got != want {
			t.Errorf("normEmail(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"+1 (650) 555-1234": "+16505551234",
		"0044 20 7183 8750": "+442071838750",
		"+34600111222":      "+34600111222",
		"+":                 "",
		"000":               "",
	} {
		if got := normPhone(in); got != want {
			t.Errorf("normPhone(%q) = %q, want %q", in, got, want)
		}
	}
}
