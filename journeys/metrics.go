package journeys

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the journey engine's Prometheus collectors. Journey ids are a
// bounded set (the files), so they may be labels; profile ids never are.
type Metrics struct {
	Actions    *prometheus.CounterVec
	EvalErrors prometheus.Counter
	Reloads    *prometheus.CounterVec
}

// NewMetrics makes and registers (when reg is not nil) the collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_journey_actions_total", Help: "Journey actions committed, by journey and action (enter, send, suppressed, exit, ...).",
		}, []string{"journey", "action"}),
		EvalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_journey_eval_errors_total", Help: "Journey conditions that failed to evaluate (counted as false).",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_journey_reloads_total", Help: "Reloads of journey files, by result.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Actions, m.EvalErrors, m.Reloads)
	}
	return m
}

func (m *Metrics) observe(actions []Action) {
	for _, a := range actions {
		m.Actions.WithLabelValues(a.Journey, a.Action).Inc()
	}
}
