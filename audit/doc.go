// Package audit explains a business's history from the log: the timeline
// (each event with who caused it and what it meant), replay (what
// GET …/runs/active would have answered at an instant, and why), the
// lifecycle lines (compactions and erasures) printed after a timeline, and
// the short run ids all of them print.
//
// It owns no SQL and no state: every answer is a fold of what eventstore
// reads, with domain.Evolve and the run's own policy, so it is the same on
// every replica and at any read-model lag.
//
// It imports domain and eventstore only (plus the standard library and
// uuid). It must never import projections, feed, api or any read model:
// history is judged from the log alone, so a rebuild or a lagging consumer
// group can never change what the audit says.
package audit
