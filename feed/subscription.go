package feed

import "sync"

// Subscribe follows the changes group makes to one business until Close.
func (f *Feed[P]) Subscribe(group, business string) *Subscription[P] {
	t := topic{group, business}
	s := &Subscription[P]{feed: f, topic: t, signal: make(chan struct{}, 1), items: map[string]Item[P]{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[t] == nil {
		f.subs[t] = map[*Subscription[P]]struct{}{}
	}
	f.subs[t][s] = struct{}{}
	return s
}

// Subscribers is the number of open subscriptions.
func (f *Feed[P]) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, set := range f.subs {
		n += len(set)
	}
	return n
}

// subscribed reports whether anyone follows group.
func (f *Feed[P]) subscribed(group string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range f.subs {
		if t.group == group {
			return true
		}
	}
	return false
}

// Subscription is one business's changes, coalesced: however many batches
// moved it since the subscriber last looked, it takes the newest version of
// each item, and whether it must read (a change without items, or a resync).
type Subscription[P any] struct {
	feed   *Feed[P]
	topic  topic
	signal chan struct{}

	mu       sync.Mutex
	items    map[string]Item[P]
	mustRead bool
}

// C is signalled when something arrived; then call Take.
func (s *Subscription[P]) C() <-chan struct{} { return s.signal }

// Take returns the items that arrived (the newest version of each) and
// whether the subscriber must read the read model itself, and empties the
// mailbox.
func (s *Subscription[P]) Take() (values []P, mustRead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.items {
		values = append(values, it.Value)
	}
	clear(s.items)
	mustRead, s.mustRead = s.mustRead, false
	return values, mustRead
}

// Close ends the subscription; it frees it at once.
func (s *Subscription[P]) Close() {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	if set := s.feed.subs[s.topic]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(s.feed.subs, s.topic)
		}
	}
}

func (s *Subscription[P]) post(items []Item[P], mustRead bool) {
	s.mu.Lock()
	for _, it := range items {
		if cur, ok := s.items[it.Key]; !ok || cur.Version < it.Version {
			s.items[it.Key] = it
		}
	}
	s.mustRead = s.mustRead || mustRead
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default: // already signalled; Take gets everything
	}
}
