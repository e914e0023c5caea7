package main

import (
	"fmt"
	"io"
	"net"
)

// readyHint is what serve prints on stdout once it listens: where it is,
// where the admin token comes from and one request to try. The JSON logs
// stay on stderr. It never prints the admin token, nor a write key that
// came from the environment (a deployment's); a write key from the config
// file is printed, as Segment write keys ship inside web pages anyway.
type readyHint struct {
	addr         string // the listener's address
	cfg          *Config
	tokenFromEnv bool // CARTERA_ADMIN_TOKEN set
	keysFromEnv  bool // CARTERA_WRITE_KEYS set
}

func (h readyHint) write(w io.Writer) {
	scheme := "http://"
	if h.cfg.TLS.on() {
		scheme = "https://"
	}
	base := scheme + h.addr
	if host, port, err := net.SplitHostPort(h.addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		base = scheme + net.JoinHostPort(host, port)
	}
	config := h.cfg.path
	if config == "" {
		config = "none"
	}
	var token string
	switch {
	case h.cfg.AdminToken == "":
		token = "none set, so the admin API refuses every request; set CARTERA_ADMIN_TOKEN"
	case h.tokenFromEnv:
		token = "from CARTERA_ADMIN_TOKEN"
	default:
		token = "admin_token in " + config
	}
	fmt.Fprintf(w, "Cartera is ready on %s (config %s, data %s)\n", base, config, h.cfg.Data)
	fmt.Fprintf(w, "  admin token: %s; send it as Authorization: Bearer <token>\n", token)
	fmt.Fprintf(w, "  HTTP API:    docs/openapi.yaml; JSON logs go to stderr\n")
	fmt.Fprintf(w, "  console:     %s/console/ %s\n", base, h.consoleLogin(config))
	fmt.Fprintf(w, "  try:\n")
	fmt.Fprintf(w, "    curl -u %s: -H 'Content-Type: application/json' -d '{\"userId\":\"u-1\",\"event\":\"Product Viewed\",\"properties\":{\"product_id\":\"shoe-42\"}}' %s/v1/track\n", h.writeKey(), base)
	fmt.Fprintf(w, "  Stop with Ctrl-C.\n")
}

// writeKey picks a key of a source without a tracking plan (any event goes
// through), else of the first source.
func (h readyHint) writeKey() string {
	if h.keysFromEnv {
		return "<write key>"
	}
	key := ""
	for _, s := range h.cfg.Sources {
		if len(s.WriteKeys) == 0 {
			continue
		}
		if s.Plan == nil {
			return s.WriteKeys[0]
		}
		if key == "" {
			key = s.WriteKeys[0]
		}
	}
	if key == "" {
		return "<write key>"
	}
	return key
}

// consoleLogin says how to log in to the console: the dev account when the
// config has it with its well-known password (examples/cartera.yaml), never
// a real user's password, which serve does not know.
func (h readyHint) consoleLogin(config string) string {
	if name, pw, role, ok := h.cfg.Console.DevLogin(); ok {
		return fmt.Sprintf("(dev login, DEVELOPMENT ONLY: user %s, password %s, role %s; from %s)", name, pw, role, config)
	}
	if len(h.cfg.Console.Users) == 0 {
		return "(no users yet: cartera user add NAME --role admin prints the line to add under console.users)"
	}
	return fmt.Sprintf("(%d users in console.users of %s)", len(h.cfg.Console.Users), config)
}
