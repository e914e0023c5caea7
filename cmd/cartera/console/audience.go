package console

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"html/template"
	"math"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/rules"
)

const membersPage = 50

// exportPage is how many members the CSV export reads in one go: each
// page is a read transaction of its own, so a slow download never holds
// one open.
const exportPage = 1000

// audienceInfo finds a declared audience; ok is false for an unknown one.
func (c *Console) audienceInfo(id string) (rules.AudienceInfo, bool, error) {
	list, err := c.o.Audiences.Audiences()
	if err != nil {
		return rules.AudienceInfo{}, false, err
	}
	i := slices.IndexFunc(list, func(a rules.AudienceInfo) bool { return a.Name == id })
	if i < 0 {
		return rules.AudienceInfo{}, false, nil
	}
	return list[i], true, nil
}

func (c *Console) audience(ctx *fiber.Ctx) error {
	id := ctx.Params("id")
	info, ok, err := c.audienceInfo(id)
	if err != nil {
		return err
	}
	if !ok {
		return c.fail(ctx, fiber.StatusNotFound, "No such audience.")
	}
	after := ctx.Query("after")
	members, next, err := c.o.Audiences.Members(id, after, membersPage)
	if err != nil {
		return err
	}
	now := c.o.Now()
	list, err := c.samples.since(now.Add(-24*time.Hour - 2*c.o.SampleEvery))
	if err != nil {
		return err
	}
	list = append(list, sample{At: now, Sizes: map[string]int64{id: info.Size}})
	return c.render(ctx, fiber.StatusOK, "audience", "Audience "+id, "audiences", map[string]any{"Info": info, "Members": members, "Next": next, "After": after,
		"SizeChart": sizeChart(list, id, now)})
}

// exportAudience streams every member of an audience as CSV (profile_id,
// entered_at in RFC 3339), page by page; nothing personal beyond the
// profile id. Members who enter or leave during the download may or may
// not be in it, as with paging the API. An error after the first page
// has gone out cannot change the status any more: the file then ends
// with a line "error,<message>" instead of passing for complete.
func (c *Console) exportAudience(ctx *fiber.Ctx) error {
	id := ctx.Params("id")
	_, ok, err := c.audienceInfo(id)
	if err != nil {
		return err
	}
	if !ok {
		return c.fail(ctx, fiber.StatusNotFound, "No such audience.")
	}
	first, next, err := c.o.Audiences.Members(id, "", exportPage)
	if err != nil {
		return err
	}
	c.recordBy(ctx, "export_audience", "audience "+id, "csv")
	ctx.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="audience-%s.csv"`, safeName(id)))
	ctx.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	members, log := c.o.Audiences.Members, c.o.Log
	ctx.Context().SetBodyStreamWriter(func(bw *bufio.Writer) {
		w := csv.NewWriter(bw)
		_ = w.Write([]string{"profile_id", "entered_at"})
		page := first
		for {
			for _, m := range page {
				_ = w.Write([]string{m.ProfileID, m.EnteredAt.UTC().Format(time.RFC3339)})
			}
			w.Flush()
			if w.Error() != nil || bw.Flush() != nil {
				return // the client went away
			}
			if next == "" {
				return
			}
			if page, next, err = members(id, next, exportPage); err != nil {
				log.Error("console: export audience", "audience", id, "err", err)
				_ = w.Write([]string{"error", err.Error()})
				w.Flush()
				return
			}
		}
	})
	return nil
}

// sampleOf is a sample of the reading with the audiences' sizes and the
// ad destinations' delivered counters; a failure to read the sizes leaves
// them out of this sample (logged), not the counters.
func (c *Console) sampleOf(r reading) sample {
	x := sampleOf(r)
	list, err := c.o.Audiences.Audiences()
	if err != nil {
		c.o.Log.Warn("console: sample audience sizes", "err", err)
	}
	for _, a := range list {
		if x.Sizes == nil {
			x.Sizes = map[string]int64{}
		}
		x.Sizes[a.Name] = a.Size
	}
	for _, dests := range c.o.AdDestinations {
		for _, d := range dests {
			if x.Synced == nil {
				x.Synced = map[string]float64{}
			}
			x.Synced[d] = r.Delivered[d]
		}
	}
	return x
}

// levels are a gauge's values over n steps after from: each step holds
// the last value sampled in it (step i is from+i*step exclusive to
// from+(i+1)*step inclusive, as in buckets); a step without a sample, or
// whose samples lack the gauge, is NaN.
func levels(list []sample, from time.Time, step time.Duration, n int, pick func(sample) (float64, bool)) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.NaN()
	}
	for _, s := range list {
		after := s.At.Sub(from)
		idx := int((after - 1) / step)
		if after <= 0 || idx >= n {
			continue
		}
		if v, ok := pick(s); ok {
			out[idx] = v
		}
	}
	return out
}

// sizeChart draws an audience's size over the last day, a point per 15
// minutes.
func sizeChart(list []sample, audience string, now time.Time) template.HTML {
	const span, step = 24 * time.Hour, 15 * time.Minute
	from := now.Add(-span)
	v := levels(list, from, step, int(span/step), func(s sample) (float64, bool) {
		n, ok := s.Sizes[audience]
		return float64(n), ok
	})
	return chart("chart-size", "Size, last day, per 15 minutes", from, step, []series{{Name: "size", Class: "size", Values: v, Level: true}})
}
