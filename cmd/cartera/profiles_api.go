package main

// The profiles API: read, export and erase a person.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
)

func identParam(c *fiber.Ctx) (profiles.Identifier, error) {
	return profiles.ParseIdentifier(pathParam(c, "ident"))
}

// profileView is the unified profile as the API shows it.
type profileView struct {
	ID             string                      `json:"id"`
	CreatedAt      time.Time                   `json:"created_at"`
	UpdatedAt      time.Time                   `json:"updated_at"`
	LastSeenAt     time.Time                   `json:"last_seen_at"`
	Identities     []profiles.IdentityRecord   `json:"identities"`
	Traits         map[string]any              `json:"traits"`
	Computed       map[string]any              `json:"computed"`
	Consent        map[string]profiles.Consent `json:"consent"`
	ConsentHistory []profiles.ConsentChange    `json:"consent_history"`
	Audiences      []audienceView              `json:"audiences"`
	Journeys       []journeys.InstanceView     `json:"journeys"`
	Passes         []passView                  `json:"passes"`
	Merges         []profiles.LedgerEntry      `json:"merges"`
	MergedFrom     []string                    `json:"merged_from"`
	EventCount     int                         `json:"event_count"`
	Events         []profiles.Event            `json:"events"`
}

// audienceView is one audience the person is or was in.
type audienceView struct {
	ID string `json:"id"`
	rules.Membership
}

func (a *api) profileView(p *profiles.Profile, events []profiles.Event) (profileView, error) {
	standing, err := a.rules.Standing(p)
	if err != nil {
		return profileView{}, err
	}
	v := newProfileView(p, events)
	v.Computed = standing.Computed
	for _, id := range slices.Sorted(maps.Keys(standing.Audiences)) {
		v.Audiences = append(v.Audiences, audienceView{ID: id, Membership: *standing.Audiences[id]})
	}
	if a.core != nil {
		insts, err := a.core.journeys.Instances(p.ID)
		if err != nil {
			return profileView{}, err
		}
		if insts != nil {
			v.Journeys = insts
		}
	}
	if v.Passes, err = a.passViews(p.ID); err != nil {
		return profileView{}, err
	}
	return v, nil
}

func newProfileView(p *profiles.Profile, events []profiles.Event) profileView {
	v := profileView{
		ID: p.ID, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, LastSeenAt: p.LastSeenAt,
		Identities: p.Identities, Traits: p.TraitValues(), Computed: map[string]any{},
		Consent: p.Consent, ConsentHistory: p.ConsentHistory,
		Audiences: []audienceView{}, Journeys: []journeys.InstanceView{}, Passes: []passView{},
		Merges: p.Ledger, MergedFrom: p.MergedFrom, EventCount: p.EventCount, Events: events,
	}
	if v.Consent == nil {
		v.Consent = map[string]profiles.Consent{}
	}
	if v.ConsentHistory == nil {
		v.ConsentHistory = []profiles.ConsentChange{}
	}
	if v.Merges == nil {
		v.Merges = []profiles.LedgerEntry{}
	}
	if v.MergedFrom == nil {
		v.MergedFrom = []string{}
	}
	if v.Events == nil {
		v.Events = []profiles.Event{}
	}
	return v
}

func (a *api) getProfile(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	limit := defaultProfileEvents
	if s := c.Query("events"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 0 {
			return &httpError{fiber.StatusBadRequest, fmt.Sprintf("events: want a count >= 0, got %q", s)}
		}
	}
	p, err := a.store.Lookup(id)
	if err != nil {
		return err
	}
	var events []profiles.Event
	if limit > 0 {
		if events, err = a.store.Events(p.ID, limit); err != nil {
			return err
		}
	}
	v, err := a.profileView(p, events)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

func (a *api) exportProfile(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	ex, err := a.store.Export(id)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="profile-%s.json"`, ex.Profile.ID))
	v, err := a.profileView(ex.Profile, ex.Events)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"exported_at": a.now().UTC(), "profile": v})
}

func (a *api) eraseProfile(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	dropLater := false
	if s := c.Query("drop_later"); s != "" {
		if dropLater, err = strconv.ParseBool(s); err != nil {
			return &httpError{fiber.StatusBadRequest, fmt.Sprintf("drop_later: want true or false, got %q", s)}
		}
	}
	er, err := a.core.erase(c.UserContext(), id, dropLater)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"success": true, "erased": er})
}
