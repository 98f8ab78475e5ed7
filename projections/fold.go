package projections

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// Offset is a consumer group's position in subscriber order (see
// eventstore.Offset, where it lives now that the feed shares it).
type Offset = eventstore.Offset

// folded is the log folded in memory: every run's state, and the offset of
// the last event folded.
type folded struct {
	runs   map[uuid.UUID]*RunRow
	last   Offset
	events int64
}

func (f *folded) rows() []RunRow {
	out := make([]RunRow, 0, len(f.runs))
	for _, r := range f.runs {
		out = append(out, *r)
	}
	return out
}

// foldLog streams the log in subscriber order within tx, in one statement
// (one plan, one pass over the index), and folds it with
// domain.Evolve. With upTo it folds exactly the events a consumer group at
// that offset has applied; without it, everything below the oldest running
// transaction (so nothing can later appear before the returned Offset).
func foldLog(ctx context.Context, tx pgx.Tx, upTo *Offset, progress *progressMeter) (*folded, error) {
	where := `transaction_id < pg_snapshot_xmin(pg_current_snapshot())`
	var args []any
	if upTo != nil {
		where = `(transaction_id, position) <= ($1::text::xid8, $2)`
		args = []any{fmt.Sprint(upTo.TxID), upTo.Position}
	}
	if progress != nil {
		// The head's position stands for the log's length (positions skip
		// only what failed appends drew): counting would be a second pass.
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&progress.total); err != nil {
			return nil, fmt.Errorf("log head: %w", err)
		}
	}
	rows, err := tx.Query(ctx, `SELECT transaction_id::text::bigint, position, stream_id, stream_version, type, schema_version, data
		FROM events WHERE `+where+` ORDER BY transaction_id, position`, args...)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	f := &folded{runs: map[uuid.UUID]*RunRow{}}
	var (
		streamID uuid.UUID
		version  int64
		typ      string
		schema   int
		data     []byte
		txID     int64
	)
	for rows.Next() {
		if err := rows.Scan(&txID, &f.last.Position, &streamID, &version, &typ, &schema, &data); err != nil {
			return nil, err
		}
		f.last.TxID = uint64(txID)
		ev, err := domain.UnmarshalEvent(typ, schema, data)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", f.last.Position, err)
		}
		r := f.runs[streamID]
		if r == nil {
			r = &RunRow{}
			f.runs[streamID] = r
		}
		if version <= r.Version {
			return nil, fmt.Errorf("run %s: event version %d after %d in the log", streamID, version, r.Version)
		}
		// A compacted run has holes where heartbeats were removed: its
		// version is the log's, not a count of the events folded.
		r.Run.Version = version - 1
		r.Run = domain.Evolve(r.Run, ev)
		r.LastPosition = f.last.Position
		f.events++
		progress.tick(f.events)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	progress.done(f.events)
	return f, nil
}

// progressMeter prints "events done / total, rate" about once a second.
type progressMeter struct {
	w     io.Writer
	label string
	total int64
	start time.Time
	next  time.Time
}

func newProgress(w io.Writer, label string) *progressMeter {
	if w == nil {
		return nil
	}
	now := time.Now()
	return &progressMeter{w: w, label: label, start: now, next: now.Add(time.Second)}
}

func (p *progressMeter) tick(n int64) {
	if p == nil || n%4096 != 0 || time.Now().Before(p.next) {
		return
	}
	p.next = time.Now().Add(time.Second)
	p.print(n)
}

func (p *progressMeter) done(n int64) {
	if p != nil {
		p.print(n)
	}
}

func (p *progressMeter) print(n int64) {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(n) / el
	}
	fmt.Fprintf(p.w, "%s: %d/~%d events (%.0f events/s)\n", p.label, n, p.total, rate)
}
