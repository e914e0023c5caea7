package profiles

import (
	"strings"
	"testing"
)

func TestNormalizeOrigin(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "https://shop.example", want: "https://shop.example"},
		{in: "HTTPS://Shop.Example/", want: "https://shop.example"},
		{in: "https://shop.example:443", want: "https://shop.example"},
		{in: "http://shop.example:80", want: "http://shop.example"},
		{in: "http://127.0.0.1:8081", want: "http://127.0.0.1:8081"},
		{in: "http://[::1]:8081", want: "http://[::1]:8081"},
		{in: "https://shop.example/cart", err: "no path"},
		{in: "https://shop.example?x=1", err: "no path"},
		{in: "shop.example", err: "http or https origin"},
		{in: "ftp://shop.example", err: "http or https origin"},
		{in: "null", err: "http or https origin"},
		{in: "https://user@shop.example", err: "no path"},
	}
	for _, tt := range tests {
		got, err := NormalizeOrigin(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("NormalizeOrigin(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("NormalizeOrigin(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestAllowsOrigin(t *testing.T) {
	srcs, err := NewSources([]SourceConfig{
		{Name: "web", WriteKeys: []string{"web-key-aaaaaaaa"}, AllowedOrigins: []string{"https://Shop.Example", "https://www.shop.example:443/"}},
		{Name: "blog", WriteKeys: []string{"blog-key-bbbbbbbb"}, AllowedOrigins: []string{"*"}},
		{Name: "pos", WriteKeys: []string{"pos-key-cccccccc"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		source, origin string
		want           bool
	}{
		{"web", "https://shop.example", true},
		{"web", "https://www.shop.example", true},
		{"web", "https://SHOP.example:443", true},
		{"web", "http://shop.example", false},
		{"web", "https://shop.example.evil.example", false},
		{"web", "https://evil.example", false},
		{"web", "null", false},
		{"web", "", false},
		{"blog", "https://anywhere.example", true},
		{"blog", "null", true},
		{"pos", "https://shop.example", false},
		{"unknown", "https://shop.example", false},
	}
	for _, tt := range tests {
		if got := srcs.AllowsOrigin(tt.source, tt.origin); got != tt.want {
			t.Errorf("AllowsOrigin(%q, %q) = %v, want %v", tt.source, tt.origin, got, tt.want)
		}
	}
	if !srcs.AnyAllowsOrigin("https://evil.example") {
		t.Error("AnyAllowsOrigin: the blog source allows every origin")
	}
	only, err := NewSources([]SourceConfig{{Name: "web", AllowedOrigins: []string{"https://shop.example"}}, {Name: "pos"}})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{"https://shop.example": true, "https://evil.example": false, "": false} {
		if got := only.AnyAllowsOrigin(origin); got != want {
			t.Errorf("AnyAllowsOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestAllowedOriginsErrors(t *testing.T) {
	_, err := NewSources([]SourceConfig{{Name: "web"}, {Name: "shop", AllowedOrigins: []string{"https://shop.example", "https://shop.example/cart"}}})
	want := `sources[1].allowed_origins[1]: want scheme://host[:port] with no path, got "https://shop.example/cart" (or "*" for any)`
	if err == nil || err.Error() != want {
		t.Errorf("NewSources: %v, want %s", err, want)
	}
}
