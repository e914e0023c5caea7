package console

import (
	"github.com/gofiber/fiber/v2"
)

// clusterPage is the Cluster page of a cluster node: the live nodes, and
// for each partition its holder, its lag as its holder told it and its
// newest snapshot. On serve (one store) there is no such page.
func (c *Console) clusterPage(ctx *fiber.Ctx) error {
	if c.o.Cluster == nil {
		return c.fail(ctx, fiber.StatusNotFound, "this gateway is not a cluster node (cluster.node): it has no cluster to show")
	}
	v, err := c.o.Cluster.Cluster(ctx.UserContext())
	if err != nil {
		return c.lookupFailed(ctx, err)
	}
	held, lagging, unheld := 0, 0, 0
	for _, p := range v.Partitions {
		switch {
		case p.Holder == "":
			unheld++
		case p.Holder == v.Node:
			held++
		}
		if p.LagEvents > 0 {
			lagging++
		}
	}
	return c.render(ctx, fiber.StatusOK, "cluster", "Cluster", "cluster", map[string]any{
		"V": v, "Held": held, "Lagging": lagging, "Unheld": unheld,
	})
}
