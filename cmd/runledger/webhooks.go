package main

import (
	"context"
	"time"

	"github.com/runledger/runledger/webhooks"
)

// webhooksPool serves the webhook sender's claims and records (short
// statements, never open across a request on the wire): a pool of its own,
// so that a burst of deliveries cannot take the connections appends need.
func webhooksPool(requestTimeout time.Duration) poolSpec {
	return poolSpec{name: "runledger-webhooks", size: 8, statementTimeout: requestTimeout,
		lockTimeout: min(2*time.Second, requestTimeout), idleInTransaction: 10 * time.Second}
}

// buildWebhooks builds the webhooks' parts: the endpoints' registry under
// the configured policy, the consumer group that makes deliveries (on the
// projector's pool) and the sender (on a pool of its own), which the group
// wakes after each batch that held events.
func (s *service) buildWebhooks(ctx context.Context) error {
	var err error
	if s.webhookPool, err = openPool(ctx, s.cfg.DatabaseURL, webhooksPool(s.cfg.RequestTimeout)); err != nil {
		return err
	}
	policy := webhooks.Policy{AllowPrivate: s.cfg.WebhookAllowPrivate, AllowInsecure: s.cfg.WebhookAllowInsecure}
	s.webhookEndpoints = &webhooks.Endpoints{Pool: s.pool, Policy: policy, Now: s.clock.Now}
	s.webhookSender = &webhooks.Sender{Pool: s.webhookPool, Policy: policy, Now: s.clock.Now, Logger: s.logger,
		Metrics: webhooks.NewMetrics(s.reg)}
	s.webhookProjector, err = webhooks.NewProjector(s.projPool, webhooks.ProjectorOptions{Now: s.clock.Now, Logger: s.logger,
		OnCommitted: s.webhookSender.Wake})
	return err
}
