package profiles

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// AnyOrigin in a source's allowed_origins lets a page on any origin send
// with the source's write key: for a public web source whose key is in
// every page anyway.
const AnyOrigin = "*"

// NormalizeOrigin returns a browser Origin ("scheme://host[:port]") in the
// form browsers send it: lower case, without a default port, path or
// trailing slash. It fails for anything that is not an http(s) origin.
func NormalizeOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("want an origin such as https://shop.example, got %q", s)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("want an http or https origin such as https://shop.example, got %q", s)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("want scheme://host[:port] with no path, got %q", s)
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

// parseOrigins validates a source's allowed_origins.
func parseOrigins(field string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for i, o := range in {
		if strings.TrimSpace(o) == AnyOrigin {
			out = append(out, AnyOrigin)
			continue
		}
		n, err := NormalizeOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("%s.allowed_origins[%d]: %w (or \"*\" for any)", field, i, err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// AllowsOrigin reports whether a page on origin may send with the write
// keys of source. A browser always says where the page is; a request
// without an Origin header (a server, a till) is not a page's and is not
// asked about.
func (s *Sources) AllowsOrigin(source, origin string) bool {
	return originIn(s.origins[source], origin)
}

// AnyAllowsOrigin reports whether some source allows origin. A preflight
// carries no write key, so it can only be answered for them all.
func (s *Sources) AnyAllowsOrigin(origin string) bool {
	for _, list := range s.origins {
		if originIn(list, origin) {
			return true
		}
	}
	return false
}

func originIn(list []string, origin string) bool {
	if len(list) == 0 || origin == "" {
		return false
	}
	if slices.Contains(list, AnyOrigin) {
		return true
	}
	n, err := NormalizeOrigin(origin)
	return err == nil && slices.Contains(list, n)
}
