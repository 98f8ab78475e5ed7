package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/eventstore"
)

// Timeline is a page of a business's explained events.
type Timeline struct {
	Events     []audit.TimelineEntry `json:"events"`
	NextCursor *string               `json:"next_cursor"`
	// Lifecycle lists the compactions of the business's runs (of the run,
	// with ?run=) and its erasures, oldest first, on every page; absent
	// when there are none.
	Lifecycle []eventstore.LifecycleRecord `json:"lifecycle,omitempty"`
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request, c call) error {
	q := r.URL.Query()
	bq := eventstore.BusinessQuery{BusinessID: c.business, Limit: 1000}
	if err := s.awaitApplied(r, ""); err != nil { // the log holds every acknowledged position: ?after= is only checked
		return err
	}
	var err error
	if bq.Since, err = optionalTime(q.Get("since"), "since"); err != nil {
		return err
	}
	if bq.Until, err = optionalTime(q.Get("until"), "until"); err != nil {
		return err
	}
	if v := q.Get("run"); v != "" {
		if bq.RunID, err = parseRunID(v, "run"); err != nil {
			return err
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return fieldProblem("limit", "must be an integer from 1 to 10000")
		}
		bq.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		at, tie, err := decodeCursor(v)
		pos, posErr := strconv.ParseInt(tie, 10, 64)
		if err != nil || posErr != nil {
			return fieldProblem("cursor", "is not a cursor this API returned")
		}
		bq.After = &eventstore.Cursor{OccurredAt: at, Position: pos}
	}
	entries, err := audit.Timeline(r.Context(), s.log, bq, s.policy)
	if err != nil {
		return err
	}
	records, err := s.log.LifecycleRecords(r.Context(), c.business, bq.RunID)
	if err != nil {
		return err
	}
	out := Timeline{Events: entries, Lifecycle: records}
	if len(entries) == bq.Limit {
		last := entries[len(entries)-1]
		cur := encodeCursor(last.OccurredAt, strconv.FormatInt(last.Position, 10))
		out.NextCursor = &cur
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, c call) error {
	at, err := optionalTime(r.URL.Query().Get("at"), "at")
	if err != nil {
		return err
	}
	if at.IsZero() {
		return fieldProblem("at", "is required (RFC 3339)")
	}
	if err := s.awaitApplied(r, ""); err != nil { // the log holds every acknowledged position: ?after= is only checked
		return err
	}
	res, err := audit.Replay(r.Context(), s.log, c.business, at, s.policy)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func optionalTime(v, field string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fieldProblem(field, "must be an RFC 3339 time like 2026-11-28T09:00:00Z")
	}
	return t.UTC(), nil
}
