package api

import "context"

// HoldCommands makes every keyed command call hold after its key is claimed
// and before it runs (a command waiting on a lock, injected).
func HoldCommands(s *Server, hold func(ctx context.Context)) { s.hooks.beforeCommand = hold }

// HoldAnswers makes every keyed command call hold after it ran and before
// its answer is stored (the window a crash can fall into).
func HoldAnswers(s *Server, hold func(ctx context.Context)) { s.hooks.beforeAnswer = hold }

// WakeWorkers is the number of wake workers running (sse_conn.go).
func WakeWorkers() int64 { return wakeWorkers.Load() }
