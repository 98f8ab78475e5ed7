// Package webhooks tells systems outside runledger what happened to runs,
// to the Standard Webhooks specification (https://www.standardwebhooks.com):
// endpoints registered per business, deliveries made by a consumer group over
// the log (one per event and subscribed endpoint, created exactly once in the
// batch that moves the group's offset), and a sender that any replica may run,
// claiming due deliveries under a lease so that no two replicas send one at
// the same moment. Every attempt is signed (HMAC-SHA256 over
// id.timestamp.body), retried on a fixed schedule with jitter, and refused
// when its target resolves to a loopback, private, link-local or metadata
// address (checked again at every send, since DNS can change).
//
// The consumer group runs on projections.Consumer (it reads every event but
// heartbeats, which no webhook is about). webhooks depends on domain,
// eventstore and projections; it must never import watermill or
// watermill-sql (projections owns the subscriber), nor api, reaper or cmd.
package webhooks
