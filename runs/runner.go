package runs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// maxAttempts bounds the reload-and-retry loop on version conflicts.
const maxAttempts = 8

// Runner executes commands: load the run, decide, append, and on a version
// conflict reload and decide again (bounded). It is the application layer
// shared by the API and the reaper.
type Runner struct {
	Store  *eventstore.Store
	Policy domain.Policy
	// Now is the server's clock; decisions never use a worker's time.
	Now func() time.Time
	// OnConflict, if set, is called for each version conflict retried (metrics).
	OnConflict func()
	// OnAppended, if set, is called after each successful append (metrics).
	OnAppended func(Result)

	states stateCache
}

// NewRunner returns a Runner with the system clock.
func NewRunner(store *eventstore.Store, policy domain.Policy) *Runner {
	return &Runner{Store: store, Policy: policy, Now: time.Now, states: newStateCache()}
}

// Result is the outcome of a command.
type Result struct {
	Run domain.Run
	// Events are the events appended (none when the command was coalesced or repeated).
	Events []domain.Event
	// LastPosition is the log position of the run's last event: the one this
	// command appended, or for a command that appended nothing, the last one
	// before it (what a read must have applied to show this result).
	LastPosition int64
}

// Execute runs cmd on run runID of businessID. It returns domain.ErrRunNotFound
// if the run does not exist or belongs to another business, the domain's
// refusals (*domain.RunEndedError with the final state, *domain.ValidationError,
// domain.ErrNotStale), or eventstore.ErrVersionConflict if the run kept
// moving through every retry.
func (rn *Runner) Execute(ctx context.Context, businessID string, runID uuid.UUID, cmd domain.Command, meta eventstore.Metadata) (Result, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if res, ok, err := rn.recordedFor(ctx, runID, meta); ok || err != nil {
			if err == nil && res.Run.BusinessID != businessID {
				err = domain.ErrRunNotFound
			}
			return res, err
		}
		state, cached, err := rn.load(ctx, runID, attempt == 0)
		if err != nil {
			return Result{}, err
		}
		if !state.Run.Exists() || state.Run.BusinessID != businessID {
			return Result{}, domain.ErrRunNotFound
		}
		res, refused, err := rn.decideAndAppend(ctx, state, runID, cmd, meta)
		switch {
		case cached && refused:
			// A refusal carries the run's state: answer it from the log, not
			// from this process's memory (the run may have been erased since).
			rn.states.drop(runID)
			continue
		case errors.Is(err, eventstore.ErrVersionConflict):
			rn.states.drop(runID)
			rn.conflict()
			continue
		case cached && err == nil && len(res.Events) == 0:
			// Nothing to write, so nothing checked the cached state against the
			// log: answer from the log (another replica may have cancelled).
			rn.states.drop(runID)
			continue
		case err == nil && len(res.Events) == 0:
			rn.states.put(runID, state) // fresh from the snapshot: the next write can start from it
		}
		return res, err
	}
	return Result{}, fmt.Errorf("run %s: gave up after %d attempts: %w", runID, maxAttempts, eventstore.ErrVersionConflict)
}

// load returns the run's state: from the cache when allowed (a write made
// from it is conditional on its version, so a stale entry only costs a
// retry), otherwise from the snapshot.
func (rn *Runner) load(ctx context.Context, runID uuid.UUID, cacheOK bool) (eventstore.Snapshot, bool, error) {
	if cacheOK {
		if r, ok := rn.states.get(runID); ok {
			return r, true, nil
		}
	}
	r, err := rn.Store.LoadSnapshot(ctx, runID)
	return r, false, err
}

// Start opens a run. If the business's open run is silent past the TTL, it is
// ended as stale first; if it is active, Start returns
// *domain.ActiveRunExistsError naming it. A retried start of the same run
// with the same parameters returns the run without appending.
func (rn *Runner) Start(ctx context.Context, cmd domain.StartRun, meta eventstore.Metadata) (Result, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if res, ok, err := rn.recordedFor(ctx, cmd.RunID, meta); ok || err != nil {
			return res, err
		}
		state, err := rn.Store.LoadSnapshot(ctx, cmd.RunID)
		if err != nil {
			return Result{}, err
		}
		res, _, err := rn.decideAndAppend(ctx, state, cmd.RunID, cmd, meta)
		var active *domain.ActiveRunExistsError
		switch {
		case errors.Is(err, eventstore.ErrVersionConflict):
			rn.conflict()
			continue
		case errors.As(err, &active):
			ended, err := rn.endIfSilent(ctx, cmd.BusinessID, active.RunID, meta)
			if err != nil {
				return Result{}, err
			}
			if !ended {
				return Result{}, active
			}
			continue
		}
		return res, err
	}
	return Result{}, fmt.Errorf("start run %s: gave up after %d attempts: %w", cmd.RunID, maxAttempts, eventstore.ErrVersionConflict)
}

// endIfSilent ends the business's open run as stale if it is silent past the
// TTL, and reports whether the way is clear for a new run.
func (rn *Runner) endIfSilent(ctx context.Context, businessID string, runID uuid.UUID, meta eventstore.Metadata) (bool, error) {
	if runID == uuid.Nil { // the open run ended between the conflict and the lookup
		return true, nil
	}
	meta.CausationID = "start-while-silent"
	_, err := rn.Execute(ctx, businessID, runID, domain.FailStale{DetectedBy: "start"}, meta)
	switch {
	case err == nil, errors.Is(err, domain.ErrRunEnded), errors.Is(err, domain.ErrRunNotFound):
		return true, nil
	case errors.Is(err, domain.ErrNotStale):
		return false, nil
	}
	return false, err
}

// decideAndAppend decides cmd on state and appends its events; refused
// reports that the domain refused it (err is the refusal, nothing appended).
func (rn *Runner) decideAndAppend(ctx context.Context, state eventstore.Snapshot, runID uuid.UUID, cmd domain.Command, meta eventstore.Metadata) (res Result, refused bool, err error) {
	events, err := rn.Policy.Decide(state.Run, cmd, rn.Now())
	if err != nil {
		return Result{Run: state.Run, LastPosition: state.LastPosition}, true, err
	}
	if len(events) == 0 {
		return Result{Run: state.Run, LastPosition: state.LastPosition}, false, nil
	}
	batch := make([]eventstore.NewEvent, len(events))
	for i, e := range events {
		batch[i] = eventstore.NewEvent{ID: eventID(meta, runID, i), Event: e, Metadata: meta}
	}
	ar, err := rn.Store.AppendTo(ctx, runID, state.Run, batch)
	if err != nil {
		rn.states.drop(runID)
		return Result{Run: state.Run, LastPosition: state.LastPosition}, false, err
	}
	res = Result{Run: ar.Run, Events: events, LastPosition: ar.LastPosition}
	rn.states.put(runID, eventstore.Snapshot{Run: ar.Run, LastPosition: ar.LastPosition})
	if rn.OnAppended != nil && !ar.Duplicate {
		rn.OnAppended(res)
	}
	return res, false, nil
}

func (rn *Runner) conflict() {
	if rn.OnConflict != nil {
		rn.OnConflict()
	}
}

// recordedFor is recorded for a command that carries a CommandID (nothing
// to look for otherwise).
func (rn *Runner) recordedFor(ctx context.Context, runID uuid.UUID, meta eventstore.Metadata) (Result, bool, error) {
	if meta.CommandID == uuid.Nil {
		return Result{}, false, nil
	}
	return rn.recorded(ctx, runID, meta.CommandID)
}
