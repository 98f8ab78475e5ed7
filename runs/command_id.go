package runs

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// A command sent again (an Idempotency-Key retried after a crash, or two
// servers racing on one key) must not append twice. Such a command carries a
// CommandID in its eventstore.Metadata: its events' ids derive from it, so
// whichever attempt appends first, the other recognises the events as its
// own (by id) and answers from them instead of deciding again.

// maxCommandEvents bounds the events one command appends (a forced cancel
// appends two).
const maxCommandEvents = 4

// DeriveID returns the id named by parts under base: version 7 with base's
// timestamp (ids keep the time order of the command that made them), the
// rest a hash of base and parts. The same arguments give the same id.
func DeriveID(base uuid.UUID, parts ...string) uuid.UUID {
	h := sha256.New()
	h.Write(base[:])
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	sum := h.Sum(nil)
	var id uuid.UUID
	copy(id[:6], base[:6])
	copy(id[6:], sum[:10])
	id[6] = 0x70 | id[6]&0x0f // version 7
	id[8] = 0x80 | id[8]&0x3f // RFC 9562 variant
	return id
}

// commandEventID is the id of the i-th event command cmd appends to run runID.
func commandEventID(cmd, runID uuid.UUID, i int) uuid.UUID {
	return DeriveID(cmd, "event", runID.String(), fmt.Sprint(i))
}

// eventID is the id of the i-th event a command with meta appends to runID:
// derived from its CommandID, else fresh.
func eventID(meta eventstore.Metadata, runID uuid.UUID, i int) uuid.UUID {
	if meta.CommandID == uuid.Nil {
		return uuid.Must(uuid.NewV7())
	}
	return commandEventID(meta.CommandID, runID, i)
}

// recorded returns the result of command cmd on run runID as its first
// appending attempt left it, if one stored its events: the run as of its
// last event, the events and the position. A command that appended nothing
// (refused, or coalesced) left nothing to find, and deciding it again is
// what it would have answered.
func (rn *Runner) recorded(ctx context.Context, runID, cmd uuid.UUID) (Result, bool, error) {
	ids := make([]uuid.UUID, maxCommandEvents)
	for i := range ids {
		ids[i] = commandEventID(cmd, runID, i)
	}
	version, position, err := rn.Store.LastOfEvents(ctx, runID, ids)
	if err != nil {
		return Result{}, false, fmt.Errorf("run %s: look for command %s: %w", runID, cmd, err)
	}
	if version == 0 {
		return Result{}, false, nil
	}
	stream, err := rn.Store.ReadStream(ctx, runID)
	if err != nil {
		return Result{}, false, err
	}
	mine := map[uuid.UUID]bool{}
	for _, id := range ids {
		mine[id] = true
	}
	res := Result{LastPosition: position}
	for _, e := range stream {
		if e.Version > version {
			break
		}
		res.Run = domain.Evolve(res.Run, e.Event)
		if mine[e.EventID] {
			res.Events = append(res.Events, e.Event)
		}
	}
	return res, true, nil
}
