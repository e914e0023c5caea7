package main

import (
	"fmt"
	"strings"
)

// applyIdentitySecrets sets the sources' identity secrets given as
// "source=secret,source2=secret2" (CARTERA_IDENTITY_SECRETS). Like the write
// keys, they replace every identity secret of the file, so the examples'
// development secrets never stay valid in a deployment that sets them.
func applyIdentitySecrets(cfg *Config, v string) error {
	for i := range cfg.Sources {
		cfg.Sources[i].IdentitySecret = ""
	}
	for i, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		source, secret, ok := strings.Cut(pair, "=")
		if !ok || source == "" || secret == "" {
			return fmt.Errorf("CARTERA_IDENTITY_SECRETS: entry %d: want source=secret", i+1)
		}
		found := false
		for j := range cfg.Sources {
			if cfg.Sources[j].Name == source {
				cfg.Sources[j].IdentitySecret = secret
				found = true
			}
		}
		if !found {
			return fmt.Errorf("CARTERA_IDENTITY_SECRETS: entry %d: no source %q", i+1, source)
		}
	}
	return nil
}
