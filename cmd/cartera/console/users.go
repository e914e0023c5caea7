package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.etcd.io/bbolt"
)

// The Users page (admins): the accounts of the config file with their
// roles, the sessions each has open now and their last login, and a way to
// sign an account out everywhere (its sessions end at once; the next
// request asks it to log in). Accounts are added, changed and removed in
// the config file (cartera user add prints the line), read at start-up.

// UserRow is one account on the Users page.
type UserRow struct {
	Name     string
	Role     Role
	Rights   string
	Sessions int
	// LastLogin is the newest login the audit log holds (zero: none).
	LastLogin time.Time
}

// rights says what a role may do, as the Users page shows it.
func rights(r Role) string {
	switch r {
	case RoleAdmin:
		return "everything: erase and export people, retry and drop outbox messages, the audit log, users; and what marketers do"
	case RoleMarketer:
		return "journeys and audiences: reload, backtest, audience exports; and what viewers see"
	case RoleViewer:
		return "every page, with people's identifiers masked; no changes"
	}
	return ""
}

// loginScan bounds the audit entries read for last logins.
const loginScan = 20_000

func (c *Console) usersPage(ctx *fiber.Ctx) error {
	open := c.sessions.perUser(c.o.Now())
	last, err := c.audit.lastLogins(loginScan)
	if err != nil {
		return err
	}
	rows := make([]UserRow, 0, len(c.users))
	for _, u := range c.users {
		rows = append(rows, UserRow{Name: u.Name, Role: u.Role, Rights: rights(u.Role), Sessions: open[u.Name], LastLogin: last[u.Name]})
	}
	slices.SortFunc(rows, func(a, b UserRow) int { return strings.Compare(a.Name, b.Name) })
	return c.render(ctx, fiber.StatusOK, "users", "Users", "users", rows)
}

// signOut ends every session of the account named in the path.
func (c *Console) signOut(ctx *fiber.Ctx) error {
	name := ctx.Params("name")
	if _, ok := c.users[name]; !ok {
		return c.fail(ctx, fiber.StatusNotFound, "No such user.")
	}
	n := c.sessions.revoke(name)
	c.recordBy(ctx, "sign_out_user", name, fmt.Sprintf("%d sessions ended", n))
	c.sessions.setFlash(c.session(ctx), fmt.Sprintf("%s is signed out: %d sessions ended.", name, n), nil)
	return ctx.Redirect("/console/users", fiber.StatusSeeOther)
}

// perUser counts the live sessions of each account.
func (s *sessions) perUser(now time.Time) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, v := range s.m {
		if now.Before(v.expires) {
			out[v.user]++
		}
	}
	return out
}

// revoke ends every session of user and says how many there were.
func (s *sessions) revoke(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, v := range s.m {
		if v.user == user {
			delete(s.m, id)
			n++
		}
	}
	return n
}

// lastLogins returns each account's newest login among the newest limit
// entries of the audit log.
func (a *Audit) lastLogins(limit int) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	login := []byte(`"action":"login"`)
	err := a.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		n := 0
		for k, v := c.Last(); k != nil && n < limit; k, v = c.Prev() {
			n++
			if !bytes.Contains(v, login) {
				continue
			}
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry %x: %w", k, err)
			}
			if _, seen := out[e.User]; e.Action == "login" && !seen {
				out[e.User] = e.At
			}
		}
		return nil
	})
	return out, err
}
