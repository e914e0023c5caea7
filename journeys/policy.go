package journeys

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/google/cel-go/common/types"
	"gopkg.in/yaml.v3"

	"cartera/rules"
)

// Policy is what applies at send time to every journey: consent, quiet
// hours, frequency caps, cross-journey suppressions and priorities.
type Policy struct {
	// Location is the time zone of profiles without a valid timezone trait.
	Location *time.Location
	// ConsentRequired lists the purposes (email, sms, push, ads) that need
	// an explicit yes before a send or an ad audience sync.
	ConsentRequired []string
	Quiet           *QuietHours
	Caps            []Cap
	Suppress        []Suppression
	// PriorityWindow: a send is held back when a journey of higher
	// priority sent on the same channel to the person within the window.
	PriorityWindow time.Duration
	AdAudiences    []AdAudience
	// OnQuietHours and OnCap say what happens to a send that quiet hours
	// or a frequency cap hold back: DelayMode (it goes when they allow
	// it) or SkipMode (recorded as suppressed). A send step may say
	// otherwise. Defaults: delay for quiet hours, skip for caps.
	OnQuietHours, OnCap string
	// MaxDelay bounds how long a send may be delayed, counted from when it
	// was first held; a send that would wait longer is suppressed. Zero:
	// no bound.
	MaxDelay time.Duration
	// File and Source are the policies file and its text as read (empty
	// for DefaultPolicy): what serve shows a reload would change.
	File   string
	Source []byte
	// Holdout keeps a fixed share of people out of every marketing journey
	// (nil: none).
	Holdout *Holdout
	// UnverifiedAddresses says what happens to an email or SMS to a person
	// whose every address of that kind came only from unverified client
	// events (a public write key, see profiles.IdentityRecord): SendMode
	// (the default: a web sign-up gets its mail) or HoldMode (suppressed
	// until a server source or a verified identify names the address).
	UnverifiedAddresses string
}

// What happens to a send to an address only unverified client events gave.
const (
	// SendMode sends to it.
	SendMode = "send"
	// HoldMode suppresses the send.
	HoldMode = "hold"
)

// Holdout is the global holdout: the people whose roll for Name falls
// below Basis (hundredths of a percent) never enter a marketing journey;
// they are counted, so each journey's lift can be measured against them.
type Holdout struct {
	Name  string
	Basis int
}

// What happens to a send that quiet hours or a frequency cap hold back.
const (
	// DelayMode delays the send to when the policies allow it.
	DelayMode = "delay"
	// SkipMode records the send as suppressed; the journey goes on.
	SkipMode = "skip"
)

// QuietHours hold back sends between Start and End local time.
type QuietHours struct {
	Start, End string
	Channels   []string
	// ReleaseSpread spreads delayed sends over the first minutes after End,
	// each person at an offset of their own, so that the morning's sends
	// do not all leave at End (default 10m).
	ReleaseSpread time.Duration
}

// DefaultReleaseSpread is the quiet hours' release_spread when unset.
const DefaultReleaseSpread = 10 * time.Minute

// Cap is a frequency cap: at most Max sends on Channel ("any" for all) per
// Per to one person. Transactional journeys are not capped.
type Cap struct {
	Channel string
	Max     int
	Per     time.Duration
}

// Suppression holds back marketing sends while When holds for the profile.
type Suppression struct {
	Name    string
	When    *rules.Program
	Message string
}

// AdAudience is an audience journeys add people to, synced to ad platforms.
type AdAudience struct {
	Name        string
	Description string
}

// DefaultPolicy asks consent for email, sms and ads, in UTC.
func DefaultPolicy() *Policy {
	return &Policy{Location: time.UTC, ConsentRequired: []string{"email", "sms", "ads"}, OnQuietHours: DelayMode, OnCap: SkipMode, UnverifiedAddresses: SendMode}
}

// AdAudienceNames lists the declared ad audiences.
func (p *Policy) AdAudienceNames() []string {
	out := make([]string, len(p.AdAudiences))
	for i, a := range p.AdAudiences {
		out[i] = a.Name
	}
	return out
}

// ReadPolicy reads a policies file.
func ReadPolicy(path string, env *rules.Env) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, rules.FileErrors{{File: path, Line: 1, Col: 1, Msg: err.Error()}}
	}
	return ParsePolicy(path, b, env)
}

// ParsePolicy reads a policies file's bytes.
func ParsePolicy(name string, b []byte, env *rules.Env) (*Policy, error) {
	f, root, err := rules.OpenFile(name, b)
	if err != nil {
		return nil, err
	}
	pol := DefaultPolicy()
	pol.File, pol.Source = name, b
	if root == nil {
		return pol, nil
	}
	f.Mapping(root, "policies file", func(key string, k, v *yaml.Node) {
		if key != "policies" {
			f.Errorf(k, "unknown field %q: want policies", key)
			return
		}
		f.Mapping(v, "policies", func(key string, k, v *yaml.Node) {
			switch key {
			case "timezone":
				loc, err := time.LoadLocation(f.String(v, key))
				if err != nil {
					f.Errorf(v, "timezone: %v", err)
				} else {
					pol.Location = loc
				}
			case "consent_required":
				pol.ConsentRequired = nil
				f.Sequence(v, key, func(item *yaml.Node) {
					pol.ConsentRequired = append(pol.ConsentRequired, f.String(item, key))
				})
			case "quiet_hours":
				q := &QuietHours{ReleaseSpread: DefaultReleaseSpread}
				var spreadNode *yaml.Node
				f.Mapping(v, key, func(key string, k, v *yaml.Node) {
					switch key {
					case "start", "end":
						s := f.String(v, "quiet_hours."+key)
						if _, err := time.Parse("15:04", s); err != nil {
							f.Errorf(v, "quiet_hours.%s: want HH:MM, got %q", key, s)
						}
						if key == "start" {
							q.Start = s
						} else {
							q.End = s
						}
					case "channels":
						f.Sequence(v, "quiet_hours.channels", func(item *yaml.Node) {
							q.Channels = append(q.Channels, f.String(item, "quiet_hours.channels"))
						})
					case "release_spread":
						q.ReleaseSpread, spreadNode = f.Duration(v, "quiet_hours.release_spread"), v
					default:
						f.Errorf(k, "quiet_hours: unknown field %q: want start, end, channels or release_spread", key)
					}
				})
				if spreadNode != nil && (q.ReleaseSpread < 0 || q.ReleaseSpread >= q.open()) {
					f.Errorf(spreadNode, "quiet_hours.release_spread: want a duration from 0 to less than the %s between the end and the start of quiet hours, got %q", fmtDuration(q.open()), spreadNode.Value)
				}
				pol.Quiet = q
			case "frequency_caps":
				f.Sequence(v, key, func(item *yaml.Node) {
					var c Cap
					f.Mapping(item, "frequency cap", func(key string, k, v *yaml.Node) {
						switch key {
						case "channel":
							c.Channel = f.String(v, "channel")
						case "max":
							c.Max = f.Int(v, "max")
						case "per":
							c.Per = f.Duration(v, "per")
						default:
							f.Errorf(k, "frequency cap: unknown field %q: want channel, max or per", key)
						}
					})
					if c.Channel != "any" && !slices.Contains(channels, c.Channel) && c.Channel != "audience" {
						f.Errorf(item, "frequency cap: unknown channel %q", c.Channel)
					}
					if c.Max < 1 || c.Per <= 0 {
						f.Errorf(item, "frequency cap: want max >= 1 and a positive per")
					}
					pol.Caps = append(pol.Caps, c)
				})
			case "suppress":
				f.Sequence(v, key, func(item *yaml.Node) {
					var s Suppression
					f.Mapping(item, "suppression", func(key string, k, v *yaml.Node) {
						switch key {
						case "name":
							s.Name = f.String(v, "name")
						case "when":
							s.When = f.Compile(env, f.Expr(v, "when"), types.BoolType)
						case "message":
							s.Message = f.String(v, "message")
						default:
							f.Errorf(k, "suppression: unknown field %q: want name, when or message", key)
						}
					})
					if s.Name == "" {
						f.Errorf(item, "suppression: name is required")
					}
					pol.Suppress = append(pol.Suppress, s)
				})
			case "priority_window":
				pol.PriorityWindow = f.Duration(v, key)
			case "on_quiet_hours":
				pol.OnQuietHours = delayMode(f, v, key)
			case "on_cap":
				pol.OnCap = delayMode(f, v, key)
			case "max_delay":
				pol.MaxDelay = maxDelay(f, v, key)
			case "unverified_addresses":
				switch m := f.String(v, key); m {
				case SendMode, HoldMode:
					pol.UnverifiedAddresses = m
				default:
					f.Errorf(v, "unverified_addresses: want send or hold, got %q", m)
				}
			case "holdout":
				h := &Holdout{Name: "global"}
				f.Mapping(v, key, func(key string, k, v *yaml.Node) {
					switch key {
					case "name":
						h.Name = f.String(v, "holdout.name")
						if !validID(h.Name) {
							f.Errorf(v, "holdout.name: want lower_snake_case, got %q", h.Name)
						}
					case "percent":
						h.Basis = parseBasis(f, v)
					default:
						f.Errorf(k, "holdout: unknown field %q: want percent or name", key)
					}
				})
				if h.Basis == 0 && f.Count() == 0 {
					f.Errorf(v, "holdout: percent is required")
				}
				pol.Holdout = h
			case "ad_audiences":
				f.Sequence(v, key, func(item *yaml.Node) {
					var a AdAudience
					f.Mapping(item, "ad audience", func(key string, k, v *yaml.Node) {
						switch key {
						case "name":
							a.Name = f.String(v, "name")
						case "description":
							a.Description = f.String(v, "description")
						default:
							f.Errorf(k, "ad audience: unknown field %q: want name or description", key)
						}
					})
					pol.AdAudiences = append(pol.AdAudiences, a)
				})
			default:
				f.Errorf(k, "policies: unknown field %q", key)
			}
		})
	})
	if err := f.Errors(); err != nil {
		return nil, err
	}
	return pol, nil
}

// purposeOf is the consent purpose a channel needs.
func purposeOf(channel string) string {
	switch channel {
	case "audience":
		return "ads"
	case "webhook":
		return ""
	}
	return channel
}

// localTime is now in the profile's time zone (trait "timezone"), or the
// policy's.
func (p *Policy) location(traits map[string]any) *time.Location {
	if tz, ok := traits["timezone"].(string); ok && tz != "" {
		if loc, err := time.LoadLocation(tz); err == nil {
			return loc
		}
	}
	return p.Location
}

// inQuietHours reports whether local time t falls in the quiet window
// (which may cross midnight).
func (q *QuietHours) holds(channel string, t time.Time) bool {
	if q == nil || (len(q.Channels) > 0 && !slices.Contains(q.Channels, channel)) {
		return false
	}
	mins := t.Hour()*60 + t.Minute()
	start, end := minutes(q.Start), minutes(q.End)
	if start <= end {
		return mins >= start && mins < end
	}
	return mins >= start || mins < end
}

func minutes(hhmm string) int {
	t, err := time.Parse("15:04", hhmm)
	if err != nil {
		return 0
	}
	return t.Hour()*60 + t.Minute()
}

// nextLocal is the first time at or after now when the local clock in loc
// shows hh:mm.
func nextLocal(now time.Time, hhmm string, loc *time.Location) time.Time {
	local := now.In(loc)
	m := minutes(hhmm)
	at := time.Date(local.Year(), local.Month(), local.Day(), m/60, m%60, 0, 0, loc)
	if at.Before(local) {
		at = at.AddDate(0, 0, 1)
	}
	return at.UTC()
}

// open is how long the window between the end and the start of quiet
// hours lasts each day.
func (q *QuietHours) open() time.Duration {
	start, end := minutes(q.Start), minutes(q.End)
	if start <= end {
		start += 24 * 60
	}
	return time.Duration(start-end) * time.Minute
}

// delayMode reads on_quiet_hours or on_cap.
func delayMode(f *rules.File, v *yaml.Node, field string) string {
	s := f.String(v, field)
	if s != DelayMode && s != SkipMode {
		f.Errorf(v, "%s: want delay or skip, got %q", field, s)
	}
	return s
}

// maxDelay reads max_delay: a positive duration.
func maxDelay(f *rules.File, v *yaml.Node, field string) time.Duration {
	d := f.Duration(v, field) // reports what does not parse
	if _, err := rules.ParseDuration(v.Value); err == nil && d <= 0 {
		f.Errorf(v, "%s: want a positive duration, got %q", field, v.Value)
	}
	return d
}

func (c Cap) String() string { return fmt.Sprintf("%d %s per %s", c.Max, c.Channel, c.Per) }
