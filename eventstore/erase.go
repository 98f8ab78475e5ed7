package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runledger/runledger/domain"
)

// Erase's refusals.
var (
	// ErrOpenRun: the business has a run that has not ended.
	ErrOpenRun = errors.New("the business has an open run")
	// ErrRebuildRunning: a rebuild's shadow tables would bring the business back.
	ErrRebuildRunning = errors.New("a rebuild is running")
	// ErrNothingToErase: the log and the read models hold nothing of the business.
	ErrNothingToErase = errors.New("nothing of the business is stored")
)

// EraseParams says which business to erase, why and who asks.
type EraseParams struct {
	BusinessID string
	Reason     string
	// Actor is who erases ("operator:alice"), for the record.
	Actor string
	// Force first ends the business's open run, if any, as cancelled with
	// Reason, through the normal command path (runs.Runner.Erase only).
	Force bool
	// Hook, if set, is called at named points ("erase-deleted": inside the
	// transaction, before its commit); the crash tests stop the process there.
	Hook func(point string)
}

// EraseResult is what an erasure removed, by table.
type EraseResult struct {
	Counts map[string]int64
	// Cancelled is the open run --force ended, if any.
	Cancelled string
}

// Total is the number of rows removed.
func (r EraseResult) Total() int64 {
	var n int64
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// Erase removes every row of the business (events, snapshots, read models,
// idempotency keys, compaction records) in one transaction through the
// database function that alone may, and records who, when, why and how many
// rows. It changes nothing and returns a *domain.ValidationError for a bad
// id or an empty reason, ErrOpenRun while the business has a run that has not
// ended, ErrRebuildRunning during a rebuild, and ErrNothingToErase for a
// business of which nothing is stored.
func (s *Store) Erase(ctx context.Context, p EraseParams) (EraseResult, error) {
	if err := domain.ValidateBusinessID(p.BusinessID); err != nil {
		return EraseResult{}, err
	}
	if strings.TrimSpace(p.Reason) == "" {
		return EraseResult{}, domain.Invalid("reason", "is required: the erasure record says why")
	}
	if p.Actor == "" {
		p.Actor = "unknown"
	}
	res := EraseResult{Counts: map[string]int64{}}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT lifecycle_erase_business($1, $2, $3)`, p.BusinessID, p.Actor, p.Reason).Scan(&raw); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &res.Counts); err != nil {
			return err
		}
		if res.Total() == 0 {
			return ErrNothingToErase
		}
		if p.Hook != nil {
			p.Hook("erase-deleted")
		}
		return nil
	})
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case "55000":
			err = ErrOpenRun
		case "55P03":
			err = ErrRebuildRunning
		}
	}
	if err != nil {
		return EraseResult{}, fmt.Errorf("erase %s: %w", p.BusinessID, err)
	}
	return res, nil
}
