package journeys

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the journey engine's Prometheus collectors. Journey ids are a
// bounded set (the files), so they may be labels; profile ids never are.
type Metrics struct {
	Actions    *prometheus.CounterVec
	EvalErrors prometheus.Counter
	Reloads    *prometheus.CounterVec
	// EventToAction is the time from the receipt of an event to the commit
	// of the first journey action it caused (an entry, a send, an exit):
	// the action is then in the outbox, durably.
	EventToAction prometheus.Histogram
	// PurchaseToSuppression is the time from the receipt of an Order
	// Completed to the commit of the journey exit or ad audience removal
	// it caused.
	PurchaseToSuppression prometheus.Histogram
}

// latencyBuckets span 100 µs to about 3 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 1.5, 26)

// NewMetrics makes and registers (when reg is not nil) the collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_journey_actions_total", Help: "Journey actions committed, by journey, action (enter, send, suppressed, exit, ...) and channel (email, sms, webhook, audience, wallet; empty for actions without one).",
		}, []string{"journey", "action", "channel"}),
		EvalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_journey_eval_errors_total", Help: "Journey conditions that failed to evaluate (counted as false).",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_journey_reloads_total", Help: "Reloads of journey files, by result.",
		}, []string{"result"}),
		EventToAction: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cartera_journey_event_to_action_seconds", Buckets: latencyBuckets,
			Help: "Time from the receipt of an event to the commit of the first journey action it caused.",
		}),
		PurchaseToSuppression: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cartera_journey_purchase_to_suppression_seconds", Buckets: latencyBuckets,
			Help: "Time from the receipt of an Order Completed to the commit of the journey exit or ad audience removal it caused.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Actions, m.EvalErrors, m.Reloads, m.EventToAction, m.PurchaseToSuppression)
	}
	return m
}

func (m *Metrics) observe(actions []Action) {
	for _, a := range actions {
		m.Actions.WithLabelValues(a.Journey, a.Action, a.Channel).Inc()
	}
}
