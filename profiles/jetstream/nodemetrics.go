package jetstream

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is the node's metrics, for a registry of the caller's: the
// partitions it holds, those it claimed, handed over and lost, how far
// behind each one's applier is, and how long moving them took. Nothing is registered globally.
func (n *Node) Collector() prometheus.Collector { return nodeCollector{n} }

type nodeCollector struct{ n *Node }

var (
	descHeld = prometheus.NewDesc("cartera_cluster_partitions_held",
		"Partitions this node holds the lease of and applies.", nil, nil)
	descClaimed = prometheus.NewDesc("cartera_cluster_partitions_claimed_total",
		"Partitions this node claimed (took the lease of a free partition).", nil, nil)
	descReleased = prometheus.NewDesc("cartera_cluster_partitions_released_total",
		"Partitions this node handed over to the node they are assigned to now (snapshot, checkpoint, lease deleted).", nil, nil)
	descLost = prometheus.NewDesc("cartera_cluster_leases_lost_total",
		"Partition leases this node lost: lapsed before a renewal, or written by another node (its applier stopped at once).", nil, nil)
	descLag = prometheus.NewDesc("cartera_cluster_partition_lag_events",
		"Records of a partition this node holds that its applier has not read yet, as of its last read.", []string{"partition"}, nil)
	descLagAge = prometheus.NewDesc("cartera_cluster_partition_lag_seconds",
		"How long ago JetStream stored the oldest record of a partition this node holds that its applier has not read, as of the last Lags (0: none behind).", []string{"partition"}, nil)
)

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHeld
	ch <- descClaimed
	ch <- descReleased
	ch <- descLost
	ch <- descLag
	ch <- descLagAge
	c.n.steps.Describe(ch)
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(len(n.Held())))
	ch <- prometheus.MustNewConstMetric(descClaimed, prometheus.CounterValue, float64(n.claimed.Load()))
	ch <- prometheus.MustNewConstMetric(descReleased, prometheus.CounterValue, float64(n.released.Load()))
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(n.lost.Load()))
	ages := n.lastAges()
	for p, lag := range n.lagEvents() {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(lag), strconv.Itoa(p))
		ch <- prometheus.MustNewConstMetric(descLagAge, prometheus.GaugeValue, ages[p].Seconds(), strconv.Itoa(p))
	}
	n.steps.Collect(ch)
}
