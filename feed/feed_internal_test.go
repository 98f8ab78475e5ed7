package feed

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/runledger/runledger/eventstore"
)

// signalled reports whether s was signalled, and empties its mailbox.
func signalled(s *Subscription[string]) (values []string, mustRead, ok bool) {
	select {
	case <-s.C():
		values, mustRead = s.Take()
		slices.Sort(values)
		return values, mustRead, true
	default:
		return nil, false, false
	}
}

// A change reaches the subscribers of its group and businesses only; each
// mailbox keeps the newest version of each item; a change without items
// (another replica's) and a resync make the group's subscribers read.
func TestPublishTellsTheSubscribersOfItsGroupAndBusinesses(t *testing.T) {
	f := New[string](nil)
	acme, other, acmeActive := f.Subscribe("runs", "acme"), f.Subscribe("runs", "other"), f.Subscribe("active", "acme")
	defer acmeActive.Close()
	f.Publish(Change[string]{Group: "runs", Offset: eventstore.Offset{TxID: 1, Position: 3}, MaxPosition: 3,
		Businesses: map[string]int64{"acme": 3},
		Items: []Item[string]{
			{Business: "acme", Key: "r1", Version: 2, Value: "r1@2"},
			{Business: "acme", Key: "r2", Version: 1, Value: "r2@1"},
		}})
	f.Publish(Change[string]{Group: "runs", Offset: eventstore.Offset{TxID: 1, Position: 5}, MaxPosition: 5,
		Businesses: map[string]int64{"acme": 5},
		Items:      []Item[string]{{Business: "acme", Key: "r1", Version: 1, Value: "r1@1"}}}) // older: kept out
	if got, mustRead, ok := signalled(acme); !ok || mustRead || !slices.Equal(got, []string{"r1@2", "r2@1"}) {
		t.Fatalf("acme got %v mustRead=%v signalled=%v", got, mustRead, ok)
	}
	if _, _, ok := signalled(other); ok {
		t.Fatal("a business that did not move was signalled")
	}
	if _, _, ok := signalled(acmeActive); ok {
		t.Fatal("a subscriber of another group was signalled")
	}
	if off, pos := f.Offset("runs"), f.MaxApplied("runs"); off != (eventstore.Offset{TxID: 1, Position: 5}) || pos != 5 {
		t.Fatalf("runs at %+v, max %d", off, pos)
	}

	f.Publish(Change[string]{Group: "runs", Offset: eventstore.Offset{TxID: 2, Position: 6}, Businesses: map[string]int64{"other": 6}})
	if got, mustRead, ok := signalled(other); !ok || !mustRead || len(got) != 0 {
		t.Fatalf("a change without items: got %v mustRead=%v signalled=%v", got, mustRead, ok)
	}
	f.Publish(Change[string]{Group: "runs", Offset: eventstore.Offset{TxID: 2, Position: 7}, Resync: true})
	for _, s := range []*Subscription[string]{acme, other} {
		if _, mustRead, ok := signalled(s); !ok || !mustRead {
			t.Fatalf("resync: mustRead=%v signalled=%v", mustRead, ok)
		}
	}
	if _, _, ok := signalled(acmeActive); ok {
		t.Fatal("a resync of runs signalled a subscriber of another group")
	}
	acme.Close()
	other.Close()
	if n := f.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers after two of three closed", n)
	}
}

// WaitApplied returns once a publish reaches the target, not before.
func TestWaitAppliedWakesOnPublish(t *testing.T) {
	f := New[string](nil)
	target := eventstore.Offset{TxID: 3, Position: 9}
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), "runs", target) }()
	f.Publish(Change[string]{Group: "runs", Offset: eventstore.Offset{TxID: 3, Position: 8}})
	f.Publish(Change[string]{Group: "active", Offset: target})
	select {
	case err := <-done:
		t.Fatalf("returned before runs reached the target: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	f.Publish(Change[string]{Group: "runs", Offset: target})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitApplied did not return once runs reached the target")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitApplied(ctx, "runs", eventstore.Offset{TxID: 4}); err != context.Canceled {
		t.Fatalf("cancelled wait = %v", err)
	}
}
