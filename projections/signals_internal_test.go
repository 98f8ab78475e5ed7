package projections

import (
	"testing"
	"time"
)

// After a committed batch, a wake-up sent while its read was under way
// means another read (after the linger), whatever position it announced: reads follow
// transaction order, so an event can have a lower position than one just
// applied and still be hidden from that read. With no wake-up since the
// read began, the group waits for the next one.
func TestAWakeUpDuringABatchMeansAnotherRead(t *testing.T) {
	g := newGroup(projection{name: Runs}, nil, Options{PollInterval: time.Minute, Logger: quietTestLogger()})
	g.opts.setDefaults()
	stop := make(chan struct{})
	defer close(stop)
	g.stop = stop
	begin := func() { // what BeginTx records
		g.mu.Lock()
		g.readSignals, g.readBegan = g.signals, readSeq.Add(1)
		g.mu.Unlock()
	}
	commit := func(applied int64) { // what committed records
		g.mu.Lock()
		g.applied, g.readAgain = max(g.applied, applied), false
		g.mu.Unlock()
	}

	begin()
	g.notify(19) // committed while the batch ran, hidden from its read
	commit(21)
	returned := make(chan struct{})
	var pause time.Duration
	go func() { pause = g.HandleError(nil, false, nil); close(returned) }()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("a wake-up during the batch (position 19, below the 21 applied) did not bring another read")
	}
	if pause != g.opts.Linger {
		t.Fatalf("the next read comes after %v, want the linger %v", pause, g.opts.Linger)
	}

	begin()
	commit(21)
	returned = make(chan struct{})
	go func() { g.HandleError(nil, false, nil); close(returned) }()
	select {
	case <-returned:
		t.Fatal("with no wake-up since its read began, the group read again at once")
	case <-time.After(50 * time.Millisecond):
	}
	g.notify(22)
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the next wake-up did not bring a read")
	}
}

// A sibling's commit wakes a group only if the group's last read began
// after the sibling's batch did (the sibling's transaction may have hidden
// events from it).
func TestASiblingCommitWakesOnlyAReadItMayHaveBlinded(t *testing.T) {
	g := newGroup(projection{name: ActiveRuns}, nil, Options{Logger: quietTestLogger()})
	siblingBegan := readSeq.Add(1)
	g.readBegan = readSeq.Add(1) // this group's read began while the sibling's batch was open
	g.nudge(siblingBegan)
	select {
	case <-g.wake:
	default:
		t.Fatal("a read begun during the sibling's batch was not woken by its commit")
	}
	g.nudge(readSeq.Add(1)) // a sibling batch begun after this group's read
	select {
	case <-g.wake:
		t.Fatal("a read begun before the sibling's batch was woken by its commit")
	default:
	}
}
