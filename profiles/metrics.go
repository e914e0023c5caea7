package profiles

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus collectors of ingestion and profiles. Labels
// never carry ids, only bounded sets (source, type, reason, kind).
type Metrics struct {
	Accepted       *prometheus.CounterVec
	Rejected       *prometheus.CounterVec
	Duplicates     *prometheus.CounterVec
	Dropped        prometheus.Counter
	PlanViolations *prometheus.CounterVec
	CommitSeconds  prometheus.Histogram
	CommitEvents   prometheus.Histogram
	Merges         prometheus.Counter
	RefusedMerges  *prometheus.CounterVec
	RefusedIDs     *prometheus.CounterVec
	// Guarded counts unverified client events kept off protected
	// profiles, by outcome: claim (kept apart) or limited (stored without
	// its traits and consent grants).
	Guarded  *prometheus.CounterVec
	Erasures prometheus.Counter
	// ScrubbedPages counts free pages of the bbolt file overwritten with
	// zeros after erasures.
	ScrubbedPages prometheus.Counter
	// DeadEvents counts event-log records skipped after failed applies.
	DeadEvents prometheus.Counter
	// HotReads counts the writer's profile reads by where the profile
	// came from: hit (the hot-profile cache), miss (decoded: not held),
	// stale (decoded: held, but the record had changed since).
	HotReads *prometheus.CounterVec
	// Forwarded counts event-log records a partition appended again for
	// the profile they became: addressed to a profile merged into one of
	// another partition (cluster mode, crossmerge.go).
	Forwarded prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, as in tests that only read them).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_events_accepted_total", Help: "Events durably committed, by source and type.",
		}, []string{"source", "type"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_events_rejected_total", Help: "Events refused at ingestion, by source and reason.",
		}, []string{"source", "reason"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_events_duplicate_total", Help: "Events whose messageId was already applied.",
		}, []string{"source"}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_events_erased_identity_dropped_total", Help: "Events dropped because they carried an identifier erased with suppression.",
		}),
		PlanViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_tracking_plan_violations_total", Help: "Tracking plan violations, by source and reason.",
		}, []string{"source", "reason"}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cartera_commit_duration_seconds", Help: "Duration of one group commit, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		CommitEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cartera_commit_events", Help: "Events applied by one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		Merges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_profile_merges_total", Help: "Profiles merged into another.",
		}),
		RefusedMerges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_profile_merges_refused_total", Help: "Merges refused because an identifier limit would break, by kind.",
		}, []string{"kind"}),
		RefusedIDs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_identifiers_refused_total", Help: "Identifiers not linked because the profile holds the limit of that kind.",
		}, []string{"kind"}),
		Guarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_unverified_events_guarded_total", Help: "Unverified client events kept off profiles that hold identifiers from a server source, by source and outcome (claim, limited).",
		}, []string{"source", "outcome"}),
		Erasures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_profile_erasures_total", Help: "Profiles erased on request.",
		}),
		ScrubbedPages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_store_scrubbed_pages_total", Help: "Free pages of the bbolt file overwritten with zeros after erasures.",
		}),
		DeadEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_dead_events_total", Help: "Events of the event log skipped after the processors failed on them repeatedly (kept in the deadevents bucket).",
		}),
		HotReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_profile_hot_reads_total", Help: "Profiles the writer read, by result: hit (kept decoded in memory), miss (decoded from the file), stale (kept, but changed since: decoded).",
		}, []string{"result"}),
		Forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_records_forwarded_total", Help: "Event-log records addressed to a profile merged into one of another partition, appended again for that one (cluster mode).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Accepted, m.Rejected, m.Duplicates, m.Dropped, m.PlanViolations, m.CommitSeconds,
			m.CommitEvents, m.Merges, m.RefusedMerges, m.RefusedIDs, m.Guarded, m.Erasures, m.ScrubbedPages, m.DeadEvents, m.HotReads, m.Forwarded)
	}
	return m
}
