// Package reaper ends runs whose worker went silent past the TTL. It reads
// the write-side snapshots of open runs (a partial index: its cost follows
// the number of open runs, not the log) and executes FailStale through
// runs.Runner with the version it observed. A heartbeat that lands
// first wins: the Runner reloads on the conflict, the domain sees the run
// alive and refuses with ErrNotStale, and the reaper leaves it. Replicas
// coordinate through optimistic concurrency alone; an advisory lock only
// saves them duplicate work.
//
// It reaches the log only through runs.Runner (its Store's reads of open
// snapshots included) and holds its sweep lock through internal/advisory on
// the pool it is given. It must never import api, projections, webhooks or
// cmd.
package reaper
