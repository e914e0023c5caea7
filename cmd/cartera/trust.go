package main

import (
	"fmt"
)

// applyIdentitySecrets sets the sources' identity secrets given as
// "source=secret,source2=secret2" (CARTERA_IDENTITY_SECRETS). Like the write
// keys, they replace every identity secret of the file, so the examples'
// development secrets never stay valid in a deployment that sets them.
func applyIdentitySecrets(cfg *Config, v string) error {
	for i := range cfg.Sources {
		cfg.Sources[i].IdentitySecret = ""
	}
	return eachPair("CARTERA_IDENTITY_SECRETS", v, "source=secret", func(i int, source, secret string) error {
		src := cfg.source(source)
		if src == nil {
			return fmt.Errorf("CARTERA_IDENTITY_SECRETS: entry %d: no source %q", i, source)
		}
		src.IdentitySecret = secret
		return nil
	})
}
