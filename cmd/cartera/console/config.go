package console

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Role is what a console user may see and do.
type Role string

// The roles, each allowed what the one before is.
const (
	RoleViewer   Role = "viewer"
	RoleMarketer Role = "marketer"
	RoleAdmin    Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleMarketer:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Can reports whether r includes the rights of want.
func (r Role) Can(want Role) bool { return r.rank() >= want.rank() && want.rank() > 0 }

// User is one console account of the config file.
type User struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// PasswordBcrypt is the bcrypt hash of the password (cartera user add).
	PasswordBcrypt string `yaml:"password_bcrypt"`
}

// Config is the console section of the config file.
type Config struct {
	// Users are the accounts; none: the console lets nobody in.
	Users []User `yaml:"users"`
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// AuditRetention is how long audit log entries are kept.
	AuditRetention time.Duration `yaml:"audit_retention"`
	// Secure marks the session cookie Secure (set from a https public URL).
	Secure bool `yaml:"-"`
}

// DefaultAuditRetention is how long the audit log keeps an entry unless
// the config says otherwise: a year.
const DefaultAuditRetention = 365 * 24 * time.Hour

// DefaultConfig returns the console's defaults: no users, 12 h sessions,
// a year of audit log.
func DefaultConfig() Config {
	return Config{SessionTTL: 12 * time.Hour, AuditRetention: DefaultAuditRetention}
}

// MinPasswordCost is the lowest bcrypt cost a user's hash may have.
const MinPasswordCost = bcrypt.DefaultCost

// Validate reports the first invalid setting, naming it.
func (c *Config) Validate() error {
	if c.SessionTTL < time.Minute {
		return fmt.Errorf("console.session_ttl: want at least 1m, got %s", c.SessionTTL)
	}
	if c.AuditRetention < 24*time.Hour {
		return fmt.Errorf("console.audit_retention: want at least 24h, got %s", c.AuditRetention)
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		at := fmt.Sprintf("console.users[%d]", i)
		if err := checkName(u.Name); err != nil {
			return fmt.Errorf("%s.name: %w", at, err)
		}
		if seen[u.Name] {
			return fmt.Errorf("%s.name: %q appears twice", at, u.Name)
		}
		seen[u.Name] = true
		if err := checkRole(u.Role); err != nil {
			return fmt.Errorf("%s.role: %w", at, err)
		}
		cost, err := bcrypt.Cost([]byte(u.PasswordBcrypt))
		if err != nil {
			return fmt.Errorf("%s.password_bcrypt: not a bcrypt hash (make one with cartera user add): %w", at, err)
		}
		if cost < MinPasswordCost {
			return fmt.Errorf("%s.password_bcrypt: cost %d, want at least %d", at, cost, MinPasswordCost)
		}
	}
	return nil
}

// The dev account of examples/cartera.yaml. serve prints it only when the
// config holds a user of that name whose hash matches this password.
const (
	DevUser     = "dev"
	DevPassword = "dev-console-password"
)

// DevLogin returns the dev account when the config has it with its
// well-known password: a development config, never a deployment's.
func (c *Config) DevLogin() (name, password string, role Role, ok bool) {
	for _, u := range c.Users {
		if u.Name == DevUser && bcrypt.CompareHashAndPassword([]byte(u.PasswordBcrypt), []byte(DevPassword)) == nil {
			return u.Name, DevPassword, u.Role, true
		}
	}
	return "", "", "", false
}

// HashCost is the bcrypt cost of the hashes cartera user add prints.
const HashCost = 12

// MinPassword is the shortest password cartera user add takes.
const MinPassword = 12

// ErrShortPassword is returned by UserLine for a password under MinPassword.
var ErrShortPassword = fmt.Errorf("password: want at least %d characters", MinPassword)

// UserLine hashes a password and returns the YAML line to paste under
// console.users.
func UserLine(name string, role Role, password []byte) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("name: %w", err)
	}
	if err := checkRole(role); err != nil {
		return "", fmt.Errorf("role: %w", err)
	}
	if len(password) < MinPassword {
		return "", ErrShortPassword
	}
	if len(password) > 72 {
		return "", errors.New("password: bcrypt takes at most 72 bytes")
	}
	h, err := bcrypt.GenerateFromPassword(password, HashCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return fmt.Sprintf("    - {name: %s, role: %s, password_bcrypt: %q}", name, role, h), nil
}

func checkName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\r\n\"'{}:,#") {
		return fmt.Errorf("want 1 to 64 characters without spaces or YAML punctuation, got %q", name)
	}
	return nil
}

func checkRole(r Role) error {
	if r.rank() == 0 {
		return fmt.Errorf("want viewer, marketer or admin, got %q", r)
	}
	return nil
}
