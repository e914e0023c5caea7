package main

// The audiences API: list, members, CSV export of hashed identifiers.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/profiles"
	"cartera/rules"
)

func (a *api) listAudiences(c *fiber.Ctx) error {
	list, err := a.rules.Audiences()
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"audiences": list})
}

func (a *api) audienceMembers(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	id := pathParam(c, "id")
	members, next, err := a.rules.Members(id, c.Query("after"), limit)
	if err != nil {
		return err
	}
	if members == nil {
		members = []rules.Member{}
	}
	return c.JSON(fiber.Map{"audience": id, "members": members, "next": next})
}

// pageLimit reads a page's ?limit= (1 to maxPage; defaultPage when absent).
func pageLimit(c *fiber.Ctx) (int, error) {
	s := c.Query("limit")
	if s == "" {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPage {
		return 0, &httpError{fiber.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d, got %q", maxPage, s)}
	}
	return n, nil
}

// exportAudience writes an audience's members as CSV with hashed
// identifiers (SHA-256 of the normalized email and E.164 phone), the form
// ad platforms take in their upload screens.
func (a *api) exportAudience(c *fiber.Ctx) error {
	id := pathParam(c, "id")
	var b strings.Builder
	b.WriteString("profile_id,entered_at,email_sha256,phone_sha256\n")
	after := ""
	for {
		members, next, err := a.rules.Members(id, after, maxPage)
		if err != nil {
			return err
		}
		for _, m := range members {
			var emails, phones []string
			if p, err := a.store.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: m.ProfileID}); err == nil {
				for _, r := range p.Identities {
					switch r.Kind {
					case profiles.KindEmail:
						emails = append(emails, sha256Hex(r.Value))
					case profiles.KindPhone:
						phones = append(phones, sha256Hex(r.Value))
					}
				}
			}
			fmt.Fprintf(&b, "%s,%s,%s,%s\n", m.ProfileID, m.EnteredAt.Format(time.RFC3339), strings.Join(emails, ";"), strings.Join(phones, ";"))
		}
		if next == "" {
			break
		}
		after = next
	}
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="audience-%s.csv"`, id))
	return c.SendString(b.String())
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
