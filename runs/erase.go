package runs

import (
	"context"
	"errors"
	"fmt"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// Erase is Store.Erase through the runner: with p.Force, the business's open
// run is first ended as cancelled with p.Reason, by the commands a user's
// cancel and a worker's report would append (so the read models and the
// feed see it end), and then erased with the rest.
func (rn *Runner) Erase(ctx context.Context, p eventstore.EraseParams) (eventstore.EraseResult, error) {
	var cancelled string
	if p.Force {
		open, err := rn.Store.OpenRun(ctx, p.BusinessID)
		if err != nil {
			return eventstore.EraseResult{}, err
		}
		if open.Exists() {
			meta := eventstore.Metadata{Actor: p.Actor}
			res, err := rn.Execute(ctx, p.BusinessID, open.ID, domain.RequestCancel{Reason: p.Reason, RequestedBy: p.Actor}, meta)
			if err != nil && !errors.Is(err, domain.ErrRunEnded) {
				return eventstore.EraseResult{}, fmt.Errorf("erase %s: cancel run %s: %w", p.BusinessID, open.ID, err)
			}
			if err == nil && !res.Run.Ended() {
				_, err = rn.Execute(ctx, p.BusinessID, open.ID, domain.CompleteRun{Outcome: domain.OutcomeCancelled,
					CompletedCalls: res.Run.CompletedCalls, FailedCalls: res.Run.FailedCalls}, meta)
				if err != nil && !errors.Is(err, domain.ErrRunEnded) {
					return eventstore.EraseResult{}, fmt.Errorf("erase %s: end run %s: %w", p.BusinessID, open.ID, err)
				}
			}
			cancelled = open.ID.String()
		}
	}
	res, err := rn.Store.Erase(ctx, p)
	res.Cancelled = cancelled
	return res, err
}
