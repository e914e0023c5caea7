package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"cartera/channels"
	"cartera/channels/google"
	"cartera/channels/meta"
	"cartera/cmd/cartera/console"
	"cartera/profiles"
)

// defaultConfigPath is read when --config is not given and the file exists.
const defaultConfigPath = "examples/cartera.yaml"

// Config is everything a deployment sets. It is read from the YAML file,
// then the environment (CARTERA_*), then flags, each overriding the last.
type Config struct {
	Addr string `yaml:"addr"`
	Data string `yaml:"data"`
	// Journeys are the folders of journey files, relative to the config
	// file: one (`journeys: journeys`) or a list.
	Journeys Folders `yaml:"journeys"`
	// PublicURL is the base of the pass web service and tracking links.
	PublicURL string `yaml:"public_url"`
	// AdminToken guards the administration API (Bearer). Empty: the admin
	// API answers 401 to everyone.
	AdminToken string `yaml:"admin_token"`
	// MetricsAddr, when set, is where /metrics is served without a token
	// (keep it on loopback or a private network); the main listener then
	// answers 404 there. Empty: /metrics is on the main listener, behind
	// the admin token.
	MetricsAddr     string        `yaml:"metrics_addr"`
	LogLevel        string        `yaml:"log_level"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Outside services, for the channel and wallet packages.
	SMTPURL string `yaml:"smtp_url"`
	APNsURL string `yaml:"apns_url"`
	// MetaURL is the Graph API root (a root ending in a version, as
	// earlier releases had it, still works and sets the version);
	// MetaAPIVersion the Marketing API version.
	MetaURL        string `yaml:"meta_url"`
	MetaAPIVersion string `yaml:"meta_api_version"`
	// GoogleAdsURL is the legacy Google Ads API root with its version
	// (audiences with api: google_ads).
	GoogleAdsURL string `yaml:"google_ads_url"`
	// GoogleDataManagerURL is the Data Manager API root with its version.
	GoogleDataManagerURL string `yaml:"google_data_manager_url"`
	// GoogleTokenURL overrides Google's OAuth token endpoint (tests).
	GoogleTokenURL  string `yaml:"google_token_url"`
	GoogleWalletURL string `yaml:"google_wallet_url"`

	Sources  []profiles.SourceConfig `yaml:"sources"`
	Profiles profiles.Config         `yaml:"profiles"`
	// Rules are the files of computed traits and audiences, relative to
	// the config file.
	Rules []string `yaml:"rules"`
	// Policies is the file of send-time policies shared by journeys.
	Policies string `yaml:"policies"`
	// Channels sets up delivery: email, SMS, webhooks, ad audiences.
	Channels ChannelsConfig `yaml:"channels"`
	// DevClock lets POST /v1/admin/clock move time forward (demos and
	// tests; CARTERA_DEV_CLOCK=1). Never in production.
	DevClock bool `yaml:"dev_clock"`
	// DevClockStart, when set, is the instant the dev clock starts at
	// (CARTERA_DEV_CLOCK=2026-12-06T23:30:00+01:00): a demo can run at
	// 09:00 in Madrid whatever the hour, and tests run the gateway at any
	// instant they choose. Setting it turns the dev clock on.
	DevClockStart time.Time `yaml:"dev_clock_start"`
	// Wallet sets up Apple and Google Wallet passes.
	Wallet WalletConfig `yaml:"wallet"`
	// Retention bounds what would otherwise only grow.
	Retention RetentionConfig `yaml:"retention"`
	// Console is the web console's users and sessions (/console).
	Console console.Config `yaml:"console"`
	// Limits are the rate limits and connection caps of the HTTP edge.
	Limits LimitsConfig `yaml:"limits"`
	// TLS makes the gateway serve HTTPS itself.
	TLS TLSConfig `yaml:"tls"`
	// Cluster puts the event log on NATS JetStream (cluster mode).
	Cluster ClusterConfig `yaml:"cluster"`

	// path is the file the config came from ("" for none).
	path string
}

// DefaultConfig returns the settings used where nothing else is said.
func DefaultConfig() Config {
	return Config{
		Addr:                 "127.0.0.1:8080",
		Data:                 "./data/cartera.db",
		PublicURL:            "http://127.0.0.1:8080",
		LogLevel:             "info",
		ShutdownTimeout:      15 * time.Second,
		APNsURL:              "https://api.push.apple.com",
		MetaURL:              meta.DefaultBaseURL,
		MetaAPIVersion:       meta.DefaultVersion,
		GoogleAdsURL:         google.DefaultBaseURL,
		GoogleDataManagerURL: google.DefaultDataManagerURL,
		GoogleWalletURL:      "https://walletobjects.googleapis.com/walletobjects/v1",
		Profiles:             profiles.DefaultConfig(),
		Channels:             ChannelsConfig{Retention: channels.DefaultRetentionConfig(), GoogleStatus: google.DefaultStatusConfig()},
		Console:              console.DefaultConfig(),
		Limits:               DefaultLimitsConfig(),
		Cluster:              DefaultClusterConfig(),
	}
}

// Validate reports the first invalid setting, naming it.
func (c *Config) Validate() error {
	if _, _, err := splitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: %w", err)
	}
	if c.Data == "" {
		return errors.New("data: required")
	}
	if err := c.Cluster.Validate(); err != nil {
		return err
	}
	if c.MetricsAddr != "" {
		if _, _, err := splitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics_addr: %w", err)
		}
	}
	if c.Retention.Journeys < 0 || (c.Retention.Journeys > 0 && c.Retention.Journeys < 24*time.Hour) {
		return fmt.Errorf("retention.journeys: want at least 24h, got %s", c.Retention.Journeys)
	}
	for name, u := range map[string]string{"public_url": c.PublicURL, "apns_url": c.APNsURL, "meta_url": c.MetaURL, "google_ads_url": c.GoogleAdsURL, "google_data_manager_url": c.GoogleDataManagerURL, "google_wallet_url": c.GoogleWalletURL} {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" {
			return fmt.Errorf("%s: want an absolute URL, got %q", name, u)
		}
	}
	if c.GoogleTokenURL != "" {
		if p, err := url.Parse(c.GoogleTokenURL); err != nil || p.Scheme == "" || p.Host == "" {
			return fmt.Errorf("google_token_url: want an absolute URL, got %q", c.GoogleTokenURL)
		}
	}
	if err := validateAds(c); err != nil {
		return err
	}
	if c.SMTPURL != "" {
		if p, err := url.Parse(c.SMTPURL); err != nil || (p.Scheme != "smtp" && p.Scheme != "smtps") || p.Host == "" {
			return errors.New("smtp_url: want smtp://user:pass@host:port")
		}
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return errors.New("admin_token: want at least 16 characters")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level: want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout: want a positive duration, got %s", c.ShutdownTimeout)
	}
	if _, err := profiles.NewSources(c.Sources); err != nil {
		return err
	}
	if err := c.Channels.Retention.Validate("channels.retention"); err != nil {
		return err
	}
	if err := c.Console.Validate(); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if err := c.Profiles.Validate(); err != nil {
		return err
	}
	// The fair share's soft bounds come before the 503 for everyone.
	fs, hard := c.Limits.FairShare, c.Profiles.Log
	if fs.LagEvents >= hard.MaxLagEvents {
		return fmt.Errorf("limits.fair_share.lag_events: want under profiles.log.max_lag_events (%d), got %d", hard.MaxLagEvents, fs.LagEvents)
	}
	if fs.Lag >= hard.MaxLag {
		return fmt.Errorf("limits.fair_share.lag: want under profiles.log.max_lag (%s), got %s", hard.MaxLag, fs.Lag)
	}
	return nil
}

func splitHostPort(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("want host:port, got %q", addr)
	}
	return addr[:i], addr[i+1:], nil
}

// serveFlags are the command-line flags of serve; each has an env twin.
type serveFlags struct {
	addr, data, config, journeys string
	metricsAddr                  string
	tlsCert, tlsKey, acmeHost    string
	cluster                      string
	set                          map[string]bool
}

func parseServeFlags(args []string, stderr *bytes.Buffer) (*serveFlags, error) {
	f := &serveFlags{set: map[string]bool{}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "", "listen address (env CARTERA_ADDR, default 127.0.0.1:8080)")
	fs.StringVar(&f.data, "data", "", "bbolt file (env CARTERA_DATA, default ./data/cartera.db)")
	fs.StringVar(&f.config, "config", "", "YAML config (env CARTERA_CONFIG, default examples/cartera.yaml when present)")
	fs.StringVar(&f.journeys, "journeys", "", "folder of journey files, or several separated by commas (env CARTERA_JOURNEYS)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate chain (env CARTERA_TLS_CERT; with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the PEM key of --tls-cert (env CARTERA_TLS_KEY)")
	fs.StringVar(&f.acmeHost, "acme-host", "", "serve HTTPS with certificates from Let's Encrypt for this public host name (env CARTERA_ACME_HOST)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics here without a token, and not on --addr (env CARTERA_METRICS_ADDR; default: on --addr behind the admin token)")
	fs.StringVar(&f.cluster, "cluster", "", "put the event log on this NATS JetStream server, nats://host:port (env CARTERA_CLUSTER_URL; cluster mode, first step)")
	if err := fs.Parse(args); err != nil {
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, nil
}

// loadConfig merges defaults, the YAML file, the environment and flags.
func loadConfig(f *serveFlags, getenv func(string) string) (*Config, error) {
	cfg := DefaultConfig()
	path := f.config
	if !f.set["config"] {
		path = getenv("CARTERA_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	if path != "" {
		if err := readConfigFile(path, &cfg); err != nil {
			return nil, err
		}
		cfg.path = path
		// Folders the file names are relative to it; those of flags and
		// the environment to the working directory.
		cfg.Journeys = cfg.Journeys.relativeTo(filepath.Dir(path))
		cfg.Channels.Email.Templates = cfg.Channels.Email.Templates.relativeTo(filepath.Dir(path))
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return nil, err
	}
	if f.set["addr"] {
		cfg.Addr = f.addr
	}
	if f.set["data"] {
		cfg.Data = f.data
	}
	if f.set["journeys"] {
		cfg.Journeys = parseFolders(f.journeys)
	}
	if f.set["metrics-addr"] {
		cfg.MetricsAddr = f.metricsAddr
	}
	if f.set["tls-cert"] {
		cfg.TLS.Cert = f.tlsCert
	}
	if f.set["tls-key"] {
		cfg.TLS.Key = f.tlsKey
	}
	if f.set["acme-host"] {
		cfg.TLS.ACMEHost = f.acmeHost
	}
	if f.set["cluster"] {
		cfg.Cluster.URL = f.cluster
	}
	if cfg.path != "" {
		for _, p := range []*string{&cfg.Policies, &cfg.Channels.SMS.Templates} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(filepath.Dir(cfg.path), *p)
			}
		}
	}
	applyWalletEnv(&cfg, getenv)
	applyAdTokens(&cfg, getenv)
	if v := getenv("CARTERA_TRACKING_SECRET"); v != "" {
		cfg.Channels.TrackingSecret = v
	}
	if v := getenv("CARTERA_TRACKING_KEY_ID"); v != "" {
		cfg.Channels.TrackingKeyID = v
	}
	if v := getenv("CARTERA_TRACKING_PREVIOUS"); v != "" {
		// id:secret,id:secret — ":secret" is the key of tokens made
		// before key ids.
		cfg.Channels.TrackingPrevious = nil
		for _, kv := range strings.Split(v, ",") {
			id, secret, _ := strings.Cut(strings.TrimSpace(kv), ":")
			cfg.Channels.TrackingPrevious = append(cfg.Channels.TrackingPrevious, TrackingKeyConfig{ID: id, Secret: secret})
		}
	}
	for i, r := range cfg.Rules {
		if cfg.path != "" && !filepath.IsAbs(r) {
			cfg.Rules[i] = filepath.Join(filepath.Dir(cfg.path), r)
		}
	}
	if err := cfg.Validate(); err != nil {
		if cfg.path != "" {
			return nil, fmt.Errorf("config %s: %w", cfg.path, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

func readConfigFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("config %s: file not found", path)
		}
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// applyEnv reads CARTERA_* settings over the file's.
func applyEnv(cfg *Config, getenv func(string) string) error {
	str := map[string]*string{
		"CARTERA_ADDR":                    &cfg.Addr,
		"CARTERA_DATA":                    &cfg.Data,
		"CARTERA_PUBLIC_URL":              &cfg.PublicURL,
		"CARTERA_ADMIN_TOKEN":             &cfg.AdminToken,
		"CARTERA_METRICS_ADDR":            &cfg.MetricsAddr,
		"CARTERA_TLS_CERT":                &cfg.TLS.Cert,
		"CARTERA_TLS_KEY":                 &cfg.TLS.Key,
		"CARTERA_ACME_HOST":               &cfg.TLS.ACMEHost,
		"CARTERA_ACME_EMAIL":              &cfg.TLS.ACMEEmail,
		"CARTERA_ACME_HTTP_ADDR":          &cfg.TLS.ACMEHTTPAddr,
		"CARTERA_ACME_DIRECTORY_URL":      &cfg.TLS.ACMEDirectoryURL,
		"CARTERA_ACME_CA_FILE":            &cfg.TLS.ACMECAFile,
		"CARTERA_LOG_LEVEL":               &cfg.LogLevel,
		"CARTERA_SMTP_URL":                &cfg.SMTPURL,
		"CARTERA_APNS_URL":                &cfg.APNsURL,
		"CARTERA_META_URL":                &cfg.MetaURL,
		"CARTERA_GOOGLE_ADS_URL":          &cfg.GoogleAdsURL,
		"CARTERA_META_API_VERSION":        &cfg.MetaAPIVersion,
		"CARTERA_GOOGLE_DATA_MANAGER_URL": &cfg.GoogleDataManagerURL,
		"CARTERA_GOOGLE_TOKEN_URL":        &cfg.GoogleTokenURL,
		"CARTERA_GOOGLE_WALLET_URL":       &cfg.GoogleWalletURL,
		"CARTERA_CLUSTER_URL":             &cfg.Cluster.URL,
		"CARTERA_CLUSTER_IDENTITY_SECRET": &cfg.Cluster.IdentitySecret,
		"CARTERA_CLUSTER_NODE":            &cfg.Cluster.Node,
		"CARTERA_LOG_DIR":                 &cfg.Profiles.Log.Dir,
	}
	for name, p := range str {
		if v := getenv(name); v != "" {
			*p = v
		}
	}
	if v := getenv("CARTERA_CLUSTER_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("CARTERA_CLUSTER_REPLICAS: want a number of replicas such as 3, got %q", v)
		}
		cfg.Cluster.Replicas = n
	}
	if v := getenv("CARTERA_CLUSTER_IDENTITY_INDEX"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("CARTERA_CLUSTER_IDENTITY_INDEX: want 1 or 0, got %q", v)
		}
		cfg.Cluster.IdentityIndex = on
	}
	if v := getenv("CARTERA_JOURNEYS"); v != "" {
		cfg.Journeys = parseFolders(v)
	}
	switch v := getenv("CARTERA_DEV_CLOCK"); v {
	case "":
	case "1", "true":
		cfg.DevClock = true
	case "0", "false":
		cfg.DevClock = false
	default:
		start, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("CARTERA_DEV_CLOCK: want 1, 0 or an RFC 3339 start instant such as 2026-12-06T23:30:00+01:00, got %q", v)
		}
		cfg.DevClock, cfg.DevClockStart = true, start
	}
	if v := getenv("CARTERA_WRITE_KEYS"); v != "" {
		if err := applyWriteKeys(cfg, v); err != nil {
			return err
		}
	}
	if v := getenv("CARTERA_IDENTITY_SECRETS"); v != "" {
		if err := applyIdentitySecrets(cfg, v); err != nil {
			return err
		}
	}
	if v := getenv("CARTERA_LIMITS"); v != "" {
		if err := applyLimitsEnv(&cfg.Limits, v); err != nil {
			return err
		}
	}
	if v := getenv("CARTERA_ALLOWED_ORIGINS"); v != "" {
		if err := applyAllowedOrigins(cfg, v); err != nil {
			return err
		}
	}
	return nil
}

// applyAllowedOrigins sets the origins given as
// "source=https://shop.example,source=https://www.shop.example". They
// replace every allowed_origins of the file, as the shop's domains are a
// deployment's, not the examples'.
func applyAllowedOrigins(cfg *Config, v string) error {
	for j := range cfg.Sources {
		cfg.Sources[j].AllowedOrigins = nil
	}
	return eachPair("CARTERA_ALLOWED_ORIGINS", v, "source=origin", func(i int, source, origin string) error {
		src := cfg.source(source)
		if src == nil {
			return fmt.Errorf("CARTERA_ALLOWED_ORIGINS: entry %d: no source %q in the config or CARTERA_WRITE_KEYS", i, source)
		}
		src.AllowedOrigins = append(src.AllowedOrigins, origin)
		return nil
	})
}

// eachPair calls fn with each "a=b" entry of the comma-separated list v
// of the environment variable name (entries numbered from 1); an entry
// without both sides is an error that shows the form wanted.
func eachPair(name, v, want string, fn func(i int, a, b string) error) error {
	for i, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		a, b, ok := strings.Cut(pair, "=")
		if !ok || a == "" || b == "" {
			return fmt.Errorf("%s: entry %d: want %s", name, i+1, want)
		}
		if err := fn(i+1, a, b); err != nil {
			return err
		}
	}
	return nil
}

// source is the source of the config by name (nil: none).
func (c *Config) source(name string) *profiles.SourceConfig {
	for j := range c.Sources {
		if c.Sources[j].Name == name {
			return &c.Sources[j]
		}
	}
	return nil
}

// applyWriteKeys sets the keys given as "key=source,key2=source2". They
// replace every key of the file, so that the development keys of the
// examples never stay valid in a deployment; a source not in the file is
// created without a tracking plan.
func applyWriteKeys(cfg *Config, v string) error {
	for j := range cfg.Sources {
		cfg.Sources[j].WriteKeys = nil
	}
	return eachPair("CARTERA_WRITE_KEYS", v, "key=source", func(_ int, key, source string) error {
		if src := cfg.source(source); src != nil {
			src.WriteKeys = append(src.WriteKeys, key)
		} else {
			cfg.Sources = append(cfg.Sources, profiles.SourceConfig{Name: source, WriteKeys: []string{key}})
		}
		return nil
	})
}

// applyAdTokens reads the ad platforms' secrets from the environment into
// every audience and conversion sink the config sends there, so they stay
// out of the file: CARTERA_META_ACCESS_TOKEN; for Google
// CARTERA_GOOGLE_ADS_ACCESS_TOKEN, CARTERA_GOOGLE_ADS_DEVELOPER_TOKEN
// (legacy API), CARTERA_GOOGLE_ADS_SERVICE_ACCOUNT (a key file),
// CARTERA_GOOGLE_ADS_CLIENT_ID, CARTERA_GOOGLE_ADS_CLIENT_SECRET and
// CARTERA_GOOGLE_ADS_REFRESH_TOKEN.
func applyAdTokens(cfg *Config, getenv func(string) string) {
	metaTok, gDev := getenv("CARTERA_META_ACCESS_TOKEN"), getenv("CARTERA_GOOGLE_ADS_DEVELOPER_TOKEN")
	creds := func(g *GoogleCredentials) {
		for env, p := range map[string]*string{
			"CARTERA_GOOGLE_ADS_ACCESS_TOKEN":    &g.AccessToken,
			"CARTERA_GOOGLE_ADS_SERVICE_ACCOUNT": &g.ServiceAccountFile,
			"CARTERA_GOOGLE_ADS_CLIENT_ID":       &g.ClientID,
			"CARTERA_GOOGLE_ADS_CLIENT_SECRET":   &g.ClientSecret,
			"CARTERA_GOOGLE_ADS_REFRESH_TOKEN":   &g.RefreshToken,
		} {
			if v := getenv(env); v != "" {
				*p = v
			}
		}
	}
	for _, ad := range cfg.Channels.Audiences {
		if ad.Meta != nil && metaTok != "" {
			ad.Meta.AccessToken = metaTok
		}
		if ad.Google != nil {
			creds(&ad.Google.GoogleCredentials)
			if gDev != "" {
				ad.Google.DeveloperToken = gDev
			}
		}
	}
	if m := cfg.Channels.Conversions.Meta; m != nil && metaTok != "" {
		m.AccessToken = metaTok
	}
	if g := cfg.Channels.Conversions.Google; g != nil {
		creds(&g.GoogleCredentials)
	}
}

// RetentionConfig says how long records that only grow are kept.
type RetentionConfig struct {
	// Journeys is how long a finished journey instance (and the
	// idempotency keys of its actions) is kept after it was entered;
	// 0 means journeys.DefaultRetention (90 days). Send records go once no
	// frequency cap or priority window can count them.
	Journeys time.Duration `yaml:"journeys"`
}
