package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"cartera/channels"
)

// BenchmarkPlan1000 measures what Deliver does before the network: decode,
// normalize and hash 1,000 people (an address and a number each) and encode
// the request body.
func BenchmarkPlan1000(b *testing.B) {
	d, err := New(Config{Name: "meta:vip", AudienceID: "123", AccessToken: "tok"})
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
		reqs := d.plan(context.Background(), msgs, out)
		if len(reqs) != 1 {
			b.Fatalf("%d requests", len(reqs))
		}
		if _, err := reqs[0].body(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		" Test@Example.COM\t": "test@example.com",
		"no-at-sign":          "",
		"   ":                 "",
	} {
		if got := NormEmail(in); got != want {
			t.Errorf("NormEmail(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"+1 (650) 555-1234":  "16505551234",
		"0044 20 7183 8750":  "442071838750",
		"+34600111222":       "34600111222",
		"+44 (0)20 71838750": "4402071838750", // a national 0 inside stays: input is E.164
		"+":                  "",
		"ext":                "",
	} {
		if got := NormPhone(in); got != want {
			t.Errorf("NormPhone(%q) = %q, want %q", in, got, want)
		}
	}
}
