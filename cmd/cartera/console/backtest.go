package console

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// backtestShown is how many of a backtest's actions the page lists.
const backtestShown = 200

// backtestSpans are the windows the form offers.
var backtestSpans = []string{"1d", "7d", "14d", "30d"}

// backtestForm is the Backtest page: the form, and the result once run.
type backtestForm struct {
	Journeys []Journey
	// Name and File are the journey file to run (empty: the journeys in
	// force); Since is the window.
	Name, File, Since string
	Spans             []string
	Unavailable       bool
	Result            *Backtest
	Shown             []BacktestAction
}

func (c *Console) newBacktestForm() (*backtestForm, error) {
	list, err := c.o.Journeys.Journeys()
	if err != nil {
		return nil, err
	}
	return &backtestForm{Journeys: list, Since: "7d", Spans: backtestSpans, Unavailable: c.o.Backtest == nil}, nil
}

// backtestPage is the form; ?journey=<id> fills it with that journey's
// file, to edit before running.
func (c *Console) backtestPage(ctx *fiber.Ctx) error {
	f, err := c.newBacktestForm()
	if err != nil {
		return err
	}
	if id := ctx.Query("journey"); id != "" {
		j, err := c.o.Journeys.Journey(id)
		if err != nil {
			return err
		}
		if j == nil {
			return c.fail(ctx, fiber.StatusNotFound, fmt.Sprintf("No journey %q.", id))
		}
		f.Name, f.File = j.ID+".yaml", j.Source
	}
	return c.render(ctx, fiber.StatusOK, "backtest", "Backtest", "backtest", f)
}

// backtest runs the form's file (or the journeys in force) and shows what
// it would have done, with the form kept for another try.
func (c *Console) backtest(ctx *fiber.Ctx) error {
	f, err := c.newBacktestForm()
	if err != nil {
		return err
	}
	if f.Unavailable {
		return c.render(ctx, fiber.StatusConflict, "backtest", "Backtest", "backtest", f)
	}
	f.Name = strings.TrimSpace(ctx.FormValue("name"))
	f.File = strings.ReplaceAll(ctx.FormValue("file"), "\r\n", "\n")
	if since := ctx.FormValue("since"); slices.Contains(backtestSpans, since) {
		f.Since = since
	} else {
		return c.fail(ctx, fiber.StatusBadRequest, fmt.Sprintf("Window %q: choose one of %s.", since, strings.Join(backtestSpans, ", ")))
	}
	var files map[string]string
	what := "the journeys in force"
	if strings.TrimSpace(f.File) != "" {
		if f.Name == "" {
			f.Name = "journey.yaml"
		}
		files = map[string]string{f.Name: f.File}
		what = f.Name
	}
	res, errs, err := c.o.Backtest.Backtest(ctx.UserContext(), files, f.Since)
	if err != nil {
		return err
	}
	s := c.session(ctx)
	if len(errs) > 0 {
		c.recordBy(ctx, "backtest", what, fmt.Sprintf("refused: %d errors", len(errs)))
		c.sessions.setFlash(s, "The journey file does not load: nothing ran.", errs)
		return c.render(ctx, fiber.StatusBadRequest, "backtest", "Backtest", "backtest", f)
	}
	c.recordBy(ctx, "backtest", what, fmt.Sprintf("%s: %d events, %d entered", f.Since, res.Events, res.Entered))
	f.Result = res
	f.Shown = res.Actions[:min(len(res.Actions), backtestShown)]
	return c.render(ctx, fiber.StatusOK, "backtest", "Backtest", "backtest", f)
}
