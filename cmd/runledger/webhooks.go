package main

import (
	"github.com/runledger/runledger/webhooks"
)

// buildWebhooks builds the webhooks' parts: the endpoints' registry under
// the configured policy, the consumer group that makes deliveries (on the
// projector's pool) and the sender (on the commands pool), which the group
// wakes after each batch that held events.
func (s *service) buildWebhooks() error {
	policy := webhooks.Policy{AllowPrivate: s.cfg.WebhookAllowPrivate, AllowInsecure: s.cfg.WebhookAllowInsecure}
	s.webhookEndpoints = &webhooks.Endpoints{Pool: s.pool, Policy: policy, Now: s.clock.Now}
	s.webhookSender = &webhooks.Sender{Pool: s.pool, Policy: policy, Now: s.clock.Now, Logger: s.logger,
		Metrics: webhooks.NewMetrics(s.reg)}
	var err error
	s.webhookProjector, err = webhooks.NewProjector(s.projPool, webhooks.ProjectorOptions{Now: s.clock.Now, Logger: s.logger,
		OnCommitted: s.webhookSender.Wake})
	return err
}
