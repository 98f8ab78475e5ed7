// Package eventstore owns the log: all SQL that appends to and reads the
// events table and the write-side run snapshots kept beside it (run_snapshots,
// stored through their own storage format), group commit, the append
// notifications, compaction and erasure. Appends use optimistic concurrency on
// the stream version; the snapshot row of a run is moved in the same
// statement, so loading a run costs one row whatever the length of its stream.
//
// It knows nothing of commands or HTTP: deciding is domain's, and carrying a
// command out (decide, append, retry) is package runs'. It imports domain and
// internal helpers only, and must never import runs, api, projections,
// webhooks, reaper or cmd (its tests may drive it through runs).
package eventstore
