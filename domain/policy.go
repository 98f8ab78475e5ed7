package domain

import "time"

// The service defaults of the contract.
const (
	DefaultStaleAfter           = 15 * time.Minute
	DefaultHeartbeatMinInterval = 5 * time.Second
	DefaultStallAfter           = 10 * time.Minute
)

// RunPolicyMin and RunPolicyMax bound the stale_after and stall_after a start
// may set for its own run.
const (
	RunPolicyMin = time.Minute
	RunPolicyMax = 24 * time.Hour
)

// Policy holds the service's tunables. They are the defaults of runs: a run
// records its own stale_after and stall_after when it starts, and every rule
// judges a run by its own values, falling back to the Policy only for a run
// that recorded none (one started before runs recorded their policy). The
// zero value is not valid; use DefaultPolicy.
type Policy struct {
	// StaleAfter is the default TTL: a run whose last sign of life is this old is not active.
	StaleAfter time.Duration
	// HeartbeatMinInterval is the least time between two stored heartbeats;
	// heartbeats closer together are acknowledged but not stored.
	HeartbeatMinInterval time.Duration
	// StallAfter is the default time a live run's heartbeats may carry no
	// progress before it is flagged stalled. Zero means DefaultStallAfter, so
	// a Policy built without it keeps working.
	StallAfter time.Duration
}

// DefaultPolicy is the policy of the contract's defaults: 15m TTL, 5s
// coalescing, 10m stall threshold.
func DefaultPolicy() Policy {
	return Policy{StaleAfter: DefaultStaleAfter, HeartbeatMinInterval: DefaultHeartbeatMinInterval,
		StallAfter: DefaultStallAfter}
}

// Validate returns a ValidationError if the policy could make a live run look
// silent (the minimum heartbeat interval may be at most a tenth of the TTL)
// or if a duration is out of range.
func (p Policy) Validate() error {
	var v validation
	if p.StaleAfter <= 0 {
		v.add("stale_after", "must be positive")
	}
	if p.HeartbeatMinInterval < 0 {
		v.add("heartbeat_min_interval", "must not be negative")
	}
	if p.StaleAfter > 0 && p.HeartbeatMinInterval > p.StaleAfter/10 {
		v.add("heartbeat_min_interval", "%s exceeds a tenth of stale_after (%s): coalescing could make a live run look silent",
			p.HeartbeatMinInterval, p.StaleAfter/10)
	}
	if p.StallAfter < 0 {
		v.add("stall_after", "must not be negative")
	}
	return v.err()
}

// StaleAfterFor is the TTL r is judged by: its own, or the policy's for a run
// that recorded none.
func (p Policy) StaleAfterFor(r Run) time.Duration { return r.TTL(p.StaleAfter) }

// StallAfterFor is the stall threshold r is judged by: its own, or the
// policy's (DefaultStallAfter if that is zero) for a run that recorded none.
func (p Policy) StallAfterFor(r Run) time.Duration { return r.StallThreshold(p.StallAfter) }

// Stalled reports whether r is stalled at now: running, not paused, active by
// its TTL, and without progress for its stall threshold. A stall is a flag,
// never an ending: the worker is alive.
func (p Policy) Stalled(r Run, now time.Time) bool {
	return r.Active(now, p.StaleAfter) && !r.Paused && !now.Before(r.StalledSince(p.StallAfter))
}

// StalledSince is the instant from which r counts as stalled if it makes no
// progress and stays active and unpaused: its last progress plus its stall
// threshold. It is meaningful only while Stalled is true.
func (p Policy) StalledSince(r Run) time.Time { return r.StalledSince(p.StallAfter) }

// runPolicy returns the stale_after and stall_after a start puts in force:
// the command's own, or the policy's for those it leaves zero.
func (p Policy) runPolicy(c StartRun) (staleAfter, stallAfter time.Duration) {
	staleAfter, stallAfter = c.StaleAfter, c.StallAfter
	if staleAfter == 0 {
		staleAfter = p.StaleAfter
	}
	if stallAfter == 0 {
		stallAfter = p.StallAfter
		if stallAfter == 0 {
			stallAfter = DefaultStallAfter
		}
	}
	return staleAfter, stallAfter
}

// checkRunPolicy refuses a per-run duration outside RunPolicyMin–RunPolicyMax
// (zero means "the service's value" and is accepted).
func checkRunPolicy(v *validation, field string, d time.Duration) {
	if d != 0 && (d < RunPolicyMin || d > RunPolicyMax) {
		v.add(field, "must be between %s and %s", RunPolicyMin, RunPolicyMax)
	}
}
