package eventstore

// QueuedAppends is the number of appends waiting for the next batch statement.
func QueuedAppends(s *Store) int {
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	return len(s.batches.queue)
}
