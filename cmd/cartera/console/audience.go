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

	"cartera/channels"
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
		return c.adAudience(ctx, id)
	}
	after := ctx.Query("after")
	members, next, err := c.o.Audiences.Members(id, after, membersPage)
	if err != nil {
		return err
	}
	data, err := c.audienceState(ctx, id, id, info.Size)
	if err != nil {
		return err
	}
	data["Info"], data["Members"], data["Next"], data["After"] = info, members, next, after
	return c.render(ctx, fiber.StatusOK, "audience", "Audience "+id, "audiences", data)
}

// audienceState is what the pages of both kinds of audience show besides
// the members: the size over the last day (sampled under sizeKey) and the
// sync with each ad destination mirroring the audience.
func (c *Console) audienceState(ctx *fiber.Ctx, id, sizeKey string, size int64) (map[string]any, error) {
	r, err := read(c.o.Metrics, c.o.Now())
	if err != nil {
		return nil, err
	}
	list, err := c.samples.since(r.At.Add(-24*time.Hour - 2*c.o.SampleEvery))
	if err != nil {
		return nil, err
	}
	dests := c.o.AdDestinations[id]
	cur := sample{At: r.At, Sizes: map[string]int64{sizeKey: size}, Synced: map[string]float64{}}
	for _, d := range dests {
		cur.Synced[d] = r.Delivered[d]
	}
	list = append(list, cur)
	syncs, err := c.syncStates(dests, r, list, !c.session(ctx).role.Can(RoleMarketer))
	if err != nil {
		return nil, err
	}
	return map[string]any{"SizeChart": sizeChart(list, sizeKey, r.At), "Sync": syncs, "Since": list[0].At}, nil
}

// exportAudience streams every member of an audience as CSV (profile_id,
// entered_at in RFC 3339; for an ad audience journeys fill, profile_id
// and held_by), page by page; nothing personal beyond the
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
		return c.exportAdAudience(ctx, id)
	}
	return c.streamCSV(ctx, id, []string{"profile_id", "entered_at"}, func(after string) ([][]string, string, error) {
		page, next, err := c.o.Audiences.Members(id, after, exportPage)
		rows := make([][]string, len(page))
		for i, m := range page {
			rows[i] = []string{m.ProfileID, m.EnteredAt.UTC().Format(time.RFC3339)}
		}
		return rows, next, err
	})
}

// streamCSV writes an audience's export page by page (page after "" is
// the first; next "" ends it), recorded in the audit log. The first page
// is read before anything is sent, so its failure is an error page.
func (c *Console) streamCSV(ctx *fiber.Ctx, id string, header []string, page func(after string) ([][]string, string, error)) error {
	first, next, err := page("")
	if err != nil {
		return err
	}
	c.recordBy(ctx, "export_audience", "audience "+id, "csv")
	ctx.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="audience-%s.csv"`, safeName(id)))
	ctx.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	log := c.o.Log
	ctx.Context().SetBodyStreamWriter(func(bw *bufio.Writer) {
		w := csv.NewWriter(bw)
		_ = w.Write(header)
		rows := first
		for {
			for _, row := range rows {
				_ = w.Write(row)
			}
			w.Flush()
			if w.Error() != nil || bw.Flush() != nil {
				return // the client went away
			}
			if next == "" {
				return
			}
			var err error
			if rows, next, err = page(next); err != nil {
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
	if c.o.AdAudiences != nil {
		list, err := c.o.AdAudiences.AdAudiences()
		if err != nil {
			c.o.Log.Warn("console: sample ad audience sizes", "err", err)
		}
		for _, a := range list {
			if x.Sizes == nil {
				x.Sizes = map[string]int64{}
			}
			x.Sizes[adSizeKey(a.Name)] = a.Size
		}
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

// syncState is how one ad destination mirrors an audience.
type syncState struct {
	Destination              string
	Delivered, Retried, Dead float64
	Queued                   int
	LastSync                 time.Time
	LastError                string
	LastErrorAt              time.Time
}

// syncStates reads each destination's counters since the process started,
// its queue now, its last sync from the samples, and the error of its
// newest dead letter among the outbox's first outboxLimit (masked for
// viewers, as on the Outbox page).
func (c *Console) syncStates(dests []string, r reading, list []sample, mask bool) ([]syncState, error) {
	if len(dests) == 0 {
		return nil, nil
	}
	sizes := channels.Sizes{}
	var dead []*channels.Message
	if c.o.Outbox != nil {
		var err error
		if sizes, err = c.o.Outbox.Sizes(); err != nil {
			return nil, err
		}
		if dead, err = c.o.Outbox.List(channels.StateDead, outboxLimit); err != nil {
			return nil, err
		}
	}
	out := make([]syncState, 0, len(dests))
	for _, d := range dests {
		s := syncState{Destination: d, Delivered: r.Delivered[d], Retried: r.Retried[d], Dead: r.Dead[d], Queued: sizes.Queued[d], LastSync: lastSync(list, d)}
		for _, m := range dead {
			if m.Destination == d && m.LastError != "" && !m.DeadAt.Before(s.LastErrorAt) {
				s.LastError, s.LastErrorAt = m.LastError, m.DeadAt
			}
		}
		if mask {
			s.LastError = emailIn.ReplaceAllStringFunc(s.LastError, MaskEmail)
		}
		out = append(out, s)
	}
	return out, nil
}

// lastSync is when the destination last delivered: the newest sample in
// which its delivered counter grew over the sample before (a counter
// that went back, after a restart, grew if it is above zero). Zero when
// it has not since the samples began.
func lastSync(list []sample, dest string) time.Time {
	for i := len(list) - 1; i > 0; i-- {
		v, ok := list[i].Synced[dest]
		p, pok := list[i-1].Synced[dest]
		if ok && pok && v > 0 && v != p {
			return list[i].At
		}
	}
	return time.Time{}
}
