package console

// The audiences journeys fill: the policies' ad_audiences, which audience
// steps add people to and take them out of, mirrored on Meta and Google.
// Their pages are those of rules audiences, with the journeys that hold
// each member instead of an entry time, and the steps that add and
// remove instead of a rule.

import (
	"errors"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"cartera/journeys"
)

// AdAudiences is what the console reads about the audiences journeys fill.
type AdAudiences interface {
	// AdAudiences lists the policies' ad audiences with their sizes.
	AdAudiences() ([]AdAudience, error)
	// AdMembers pages through one in profile id order
	// (journeys.Engine.AdMembers).
	AdMembers(audience, after string, limit int) ([]journeys.AdMember, string, error)
}

// AdAudience is an audience journeys fill.
type AdAudience struct {
	Name, Description string
	Size              int64
	// AddedBy and RemovedBy are the journey steps that add people to it
	// and take them out, as journey/step. A journey that added a person
	// also lets go of them when it ends.
	AddedBy, RemovedBy []string
}

// adSizeKey is an ad audience's key in the samples' sizes, apart from
// the rules audiences'.
func adSizeKey(name string) string { return "ad:" + name }

func (c *Console) adAudienceInfo(id string) (AdAudience, bool, error) {
	if c.o.AdAudiences == nil {
		return AdAudience{}, false, nil
	}
	list, err := c.o.AdAudiences.AdAudiences()
	if err != nil {
		return AdAudience{}, false, err
	}
	i := slices.IndexFunc(list, func(a AdAudience) bool { return a.Name == id })
	if i < 0 {
		return AdAudience{}, false, nil
	}
	return list[i], true, nil
}

// adMemberRow is one member as the page shows them.
type adMemberRow struct {
	ProfileID string
	Holds     []string
}

// heldBy says who holds a member: "cart_abandonment (at hold)".
func heldBy(m journeys.AdMember) []string {
	out := make([]string, 0, len(m.Holds))
	for _, h := range m.Holds {
		switch {
		case h.Journey == "":
			out = append(out, "an earlier journey version")
		case h.Step == "":
			out = append(out, h.Journey)
		default:
			out = append(out, h.Journey+" (at "+h.Step+")")
		}
	}
	return out
}

func (c *Console) adAudience(ctx *fiber.Ctx, id string) error {
	info, ok, err := c.adAudienceInfo(id)
	if err != nil {
		return err
	}
	if !ok {
		return c.fail(ctx, fiber.StatusNotFound, "No such audience.")
	}
	after := ctx.Query("after")
	members, next, err := c.o.AdAudiences.AdMembers(id, after, membersPage)
	if errors.Is(err, journeys.ErrUnknownAdAudience) {
		return c.fail(ctx, fiber.StatusNotFound, "No such audience.")
	}
	if err != nil {
		return err
	}
	rows := make([]adMemberRow, len(members))
	for i, m := range members {
		rows[i] = adMemberRow{ProfileID: m.ProfileID, Holds: heldBy(m)}
	}
	data, err := c.audienceState(ctx, id, adSizeKey(id), info.Size)
	if err != nil {
		return err
	}
	data["Info"], data["Members"], data["Next"], data["After"] = info, rows, next, after
	return c.render(ctx, fiber.StatusOK, "adaudience", "Audience "+id, "audiences", data)
}

// exportAdAudience streams an ad audience's members as CSV: profile_id,
// held_by (the holding journeys, separated by spaces).
func (c *Console) exportAdAudience(ctx *fiber.Ctx, id string) error {
	if _, ok, err := c.adAudienceInfo(id); err != nil {
		return err
	} else if !ok {
		return c.fail(ctx, fiber.StatusNotFound, "No such audience.")
	}
	return c.streamCSV(ctx, id, []string{"profile_id", "held_by"}, func(after string) ([][]string, string, error) {
		page, next, err := c.o.AdAudiences.AdMembers(id, after, exportPage)
		rows := make([][]string, len(page))
		for i, m := range page {
			var names []string
			for _, h := range m.Holds {
				n := h.Journey
				if n == "" {
					n = "(earlier version)"
				}
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
			rows[i] = []string{m.ProfileID, strings.Join(names, " ")}
		}
		return rows, next, err
	})
}
