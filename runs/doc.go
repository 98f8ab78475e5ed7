// Package runs is the application layer: it carries out the commands of a
// run on the log. It owns the command handler (Runner: load the run, let
// domain.Policy decide, append, and on a version conflict reload and decide
// again, bounded; a start beside a silent run ends it as stale first), the
// Runner's cache of the state each run had after this process's last append,
// the keyed command's determinism (a command with a CommandID derives its
// event ids from it, so a retried attempt finds its first attempt's events
// instead of appending twice), and the Idempotency-Key answers with their SQL
// (claim, answer, release, the sweep, a background service of the shape
// Run(ctx) error).
//
// The API and the reaper call it. It imports domain and eventstore only of
// this module, and must never import api, projections, reaper or cmd: it
// reaches the log through eventstore.Store, never through a pool of its own
// but the one IdempotencyKeys is given.
package runs
