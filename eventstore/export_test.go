package eventstore

import "github.com/jackc/pgx/v5/pgxpool"

// QueuedAppends is the number of appends waiting for the next batch statement.
func QueuedAppends(s *Store) int {
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	return len(s.batches.queue)
}

// PoolOf is the store's pool, for the tests' own checks of the tables (the
// package gives it to no caller).
func PoolOf(s *Store) *pgxpool.Pool { return s.pool }
