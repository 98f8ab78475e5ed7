package webhooks

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the webhooks' Prometheus collectors.
type Metrics struct {
	// Deliveries counts attempts by outcome (see the Outcome constants).
	Deliveries *prometheus.CounterVec
	// OldestPending is the age of the oldest pending delivery of an enabled
	// endpoint, in seconds (0: none), measured by the sender about once a second.
	OldestPending prometheus.Gauge
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome: succeeded, retrying, failed, gone, refused, lost."}, []string{"outcome"}),
		OldestPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "runledger_webhook_oldest_pending_seconds",
			Help: "Age of the oldest pending webhook delivery of an enabled endpoint (0: none)."}),
	}
	reg.MustRegister(m.Deliveries, m.OldestPending)
	return m
}

func (m *Metrics) measurePending(ctx context.Context, pool *pgxpool.Pool, now time.Time) error {
	var oldest *time.Time
	err := pool.QueryRow(ctx, `SELECT min(d.created_at) FROM webhook_deliveries d
		JOIN webhook_endpoints e ON e.id = d.endpoint_id
		WHERE d.status = 'pending' AND NOT e.disabled`).Scan(&oldest)
	if err != nil {
		return err
	}
	age := 0.0
	if oldest != nil {
		age = max(now.Sub(*oldest).Seconds(), 0)
	}
	m.OldestPending.Set(age)
	return nil
}
