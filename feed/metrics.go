package feed

import "github.com/prometheus/client_golang/prometheus"

// Metrics count what a Listener receives.
type Metrics struct {
	Notifications *prometheus.CounterVec
	Resyncs       prometheus.Counter
}

// NewMetrics creates the listener's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_feed_notifications_total",
			Help: "Notifications received from other replicas, by channel."}, []string{"channel"}),
		Resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_feed_resyncs_total",
			Help: "Times this replica re-read every offset and told every subscriber to re-read (after a (re)connect or an overflow)."}),
	}
	reg.MustRegister(m.Notifications, m.Resyncs)
	return m
}

func (m *Metrics) resynced() {
	if m != nil {
		m.Resyncs.Inc()
	}
}
