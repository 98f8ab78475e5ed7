// Package advisory is the one home of runledger's PostgreSQL advisory locks:
// every key the service takes (so two can never collide unnoticed) and the
// helper that holds a session lock on a pooled connection. It imports pgx
// only, and must never import another package of this module.
package advisory
