package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/runledger/runledger/projections"
)

// routesOpen registers the operators' list of open runs. It is not under
// /v1/businesses/{b}: an operator token for every business ("*") sees every
// business's open run, an operator token of one business sees that
// business's only.
func (s *Server) routesOpen() {
	s.handle("GET /v1/runs/open", func(w http.ResponseWriter, r *http.Request) {
		if err := s.listOpen(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) listOpen(w http.ResponseWriter, r *http.Request) error {
	claims, _, err := s.authenticate(r)
	if err != nil {
		return err
	}
	q, err := operatorOpenRunsQuery(r, claims, 20)
	if err != nil {
		return err
	}
	if v := r.URL.Query().Get("cursor"); v != "" {
		at, business, err := decodeCursor(v)
		if err != nil {
			return fieldProblem("cursor", "is not a cursor this API returned")
		}
		q.After = &projections.OpenCursor{LastHeartbeatAt: at, BusinessID: business}
	}
	if err := s.awaitApplied(r, projections.ActiveRuns); err != nil {
		return err
	}
	rows, next, err := projections.ListOpenRuns(r.Context(), s.pool, q)
	if err != nil {
		return err
	}
	var cur string
	if next != nil {
		cur = encodeCursor(next.LastHeartbeatAt, next.BusinessID)
	}
	writeJSON(w, http.StatusOK, s.runList(rows, cur))
	return nil
}

// operatorOpenRunsQuery is the open-runs query an operator's request asks
// for (the list and its stream): scoped to the token's business unless it
// is an operator of every business, limit 1–100 (default def). It returns a
// 403 problem for any other role and a 400 for a bad limit.
func operatorOpenRunsQuery(r *http.Request, claims Claims, def int) (projections.OpenRunsQuery, error) {
	if claims.Role != RoleOperator {
		return projections.OpenRunsQuery{}, newProblem(CodeForbidden, fmt.Sprintf("role %q may not do this", claims.Role))
	}
	q := projections.OpenRunsQuery{Limit: def}
	if claims.BusinessID != AnyBusiness {
		q.BusinessID = claims.BusinessID
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return projections.OpenRunsQuery{}, fieldProblem("limit", "must be an integer from 1 to 100")
		}
		q.Limit = n
	}
	return q, nil
}
