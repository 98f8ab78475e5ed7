// Package bounded holds the one cache shape runledger uses for guesses that
// are checked before they are trusted (the Runner's run states, the
// projector's read-model rows): a map safe for concurrent use that starts
// over when it reaches its bound, so memory stays flat without eviction
// bookkeeping. A miss costs a read; a wrong entry costs a conditional write
// that fails and a retry, never a wrong answer.
package bounded

import "sync"

// Map is a concurrency-safe map of at most Max entries; when full, the next
// Put clears it first. The zero value is not usable; use New.
type Map[K comparable, V any] struct {
	mu      sync.Mutex
	max     int
	entries map[K]V
}

// New returns an empty Map bounded to max entries.
func New[K comparable, V any](max int) *Map[K, V] {
	return &Map[K, V]{max: max, entries: make(map[K]V)}
}

// Get returns the entry for k and whether there is one.
func (m *Map[K, V]) Get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.entries[k]
	return v, ok
}

// Put stores v for k, clearing the map first if it is full.
func (m *Map[K, V]) Put(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[k]; !ok && len(m.entries) >= m.max {
		clear(m.entries)
	}
	m.entries[k] = v
}

// Delete forgets k.
func (m *Map[K, V]) Delete(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, k)
}

// Clear forgets everything.
func (m *Map[K, V]) Clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.entries)
}

// Len is the number of entries.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
