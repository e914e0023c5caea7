package console

// The reload page: what the files on disk would change against what is in
// force (a dry run), the reload itself, and then what it changed, each
// file as a line diff.

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"cartera/internal/linediff"
)

// ReloadResult is what a reload did, or a dry run would do.
type ReloadResult struct {
	// Versions are the journeys' versions after it, by id.
	Versions map[string]string
	// Errors are the files' mistakes (file:line:col: message); with any,
	// nothing changed (or would).
	Errors []string
	// Changes are the definition files whose text differs, in file order.
	Changes []FileChange
}

// FileChange is one journey, rules or policies file whose text differs
// between what is in force and the disk.
type FileChange struct {
	// File is the path, relative to the config's folder when inside it.
	File string
	// Kind is journey, rules or policies.
	Kind string
	// Status is added, removed or changed.
	Status         string
	Added, Removed int
	// Hunks are the line diff, with three lines of context.
	Hunks []linediff.Hunk
}

// File statuses of a FileChange.
const (
	FileAdded   = "added"
	FileRemoved = "removed"
	FileChanged = "changed"
)

// NewFileChange compares the text in force (before, nil when the file is
// new) with the text on disk (after, nil when removed); nil when equal.
func NewFileChange(file, kind string, before, after []byte) *FileChange {
	status := FileChanged
	switch {
	case before == nil && after == nil:
		return nil
	case before == nil:
		status = FileAdded
	case after == nil:
		status = FileRemoved
	case string(before) == string(after):
		return nil
	}
	fc := &FileChange{File: file, Kind: kind, Status: status, Hunks: linediff.Hunks(string(before), string(after), 3)}
	for _, h := range fc.Hunks {
		for _, l := range h.Lines {
			switch l.Op {
			case linediff.Insert:
				fc.Added++
			case linediff.Delete:
				fc.Removed++
			}
		}
	}
	return fc
}

// Unified is the change as diff -u text, "in force" against "on disk".
func (f FileChange) Unified() string {
	return linediff.Format("in force/"+f.File, "on disk/"+f.File, f.Hunks)
}

// diffRow is one line of a rendered diff.
type diffRow struct {
	Class, Sign, Text string
	Old, New          int
	Header            bool
}

// Rows lays the hunks out as the page's table rows.
func (f FileChange) Rows() []diffRow {
	var out []diffRow
	for _, h := range f.Hunks {
		out = append(out, diffRow{Class: "hunk", Text: h.Header(), Header: true})
		for _, l := range h.Lines {
			r := diffRow{Class: "ctx", Sign: " ", Text: l.Text, Old: l.Old, New: l.New}
			switch l.Op {
			case linediff.Delete:
				r.Class, r.Sign = "del", "-"
			case linediff.Insert:
				r.Class, r.Sign = "ins", "+"
			}
			out = append(out, r)
		}
	}
	return out
}

// reloadPage validates the files on disk (a dry run) and shows what a
// reload would change, with the result of the session's last reload
// above it.
func (c *Console) reloadPage(ctx *fiber.Ctx) error {
	dry, err := c.o.Journeys.Reload(ctx.UserContext(), true)
	if err != nil {
		return err
	}
	return c.render(ctx, fiber.StatusOK, "reload", "Validate and reload", "journeys", map[string]any{
		"Dry": dry, "Last": c.sessions.takeReload(c.session(ctx)),
	})
}

// reload compiles the files again and says what changed, or why nothing
// did: on the reload page with its diff, or, with back=<journey>, on the
// journey's page.
func (c *Console) reload(ctx *fiber.Ctx) error {
	before := map[string]string{}
	if list, err := c.o.Journeys.Journeys(); err == nil {
		for _, j := range list {
			before[j.ID] = j.Version
		}
	}
	res, err := c.o.Journeys.Reload(ctx.UserContext(), false)
	if err != nil {
		return err
	}
	s := c.session(ctx)
	if len(res.Errors) > 0 {
		c.recordBy(ctx, "reload", "journeys", fmt.Sprintf("refused: %d errors", len(res.Errors)))
		c.sessions.setFlash(s, "Reload refused: the running versions stay.", res.Errors)
	} else {
		msg := reloadMessage(before, res)
		c.recordBy(ctx, "reload", "journeys", msg)
		c.sessions.setFlash(s, msg, nil)
		c.sessions.setReload(s, res)
	}
	back := "/console/journeys/reload"
	if id := ctx.FormValue("back"); id != "" {
		back = "/console/journeys/" + url.PathEscape(id)
	}
	return ctx.Redirect(back, fiber.StatusSeeOther)
}

// reloadMessage names the journeys whose version changed and the files
// that did.
func reloadMessage(before map[string]string, res *ReloadResult) string {
	after := res.Versions
	var changes []string
	for _, id := range slices.Sorted(maps.Keys(after)) {
		switch old, ok := before[id]; {
		case !ok:
			changes = append(changes, fmt.Sprintf("%s: new, version %s", id, after[id]))
		case old != after[id]:
			changes = append(changes, fmt.Sprintf("%s: version %s → %s", id, old, after[id]))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[id]; !ok {
			changes = append(changes, id+": removed")
		}
	}
	files := "no file changed"
	if n := len(res.Changes); n > 0 {
		files = fmt.Sprintf("%d files changed", n)
		if n == 1 {
			files = "1 file changed"
		}
	}
	if len(changes) == 0 {
		return fmt.Sprintf("Reloaded: %d journeys, %s, no journey version changed.", len(after), files)
	}
	return fmt.Sprintf("Reloaded: %d journeys, %s; %s.", len(after), files, strings.Join(changes, "; "))
}
