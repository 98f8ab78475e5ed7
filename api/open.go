package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

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
	token, err := bearer(r.Header.Get("Authorization"))
	if err != nil {
		return newProblem(CodeUnauthorized, "a valid bearer token is required")
	}
	claims, err := s.auth.Parse(token)
	if err != nil {
		return newProblem(CodeUnauthorized, "the bearer token is invalid or expired")
	}
	if claims.Role != RoleOperator {
		return newProblem(CodeForbidden, fmt.Sprintf("role %q may not do this", claims.Role))
	}
	q := projections.OpenRunsQuery{Limit: 20}
	if claims.BusinessID != AnyBusiness {
		q.BusinessID = claims.BusinessID
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return fieldProblem("limit", "must be an integer from 1 to 100")
		}
		q.Limit = n
	}
	if v := r.URL.Query().Get("cursor"); v != "" {
		cur, err := decodeOpenCursor(v)
		if err != nil {
			return fieldProblem("cursor", "is not a cursor this API returned")
		}
		q.After = &cur
	}
	rows, next, err := projections.ListOpenRuns(r.Context(), s.pool, q)
	if err != nil {
		return err
	}
	out := RunList{Runs: make([]RunView, len(rows))}
	for i, row := range rows {
		out.Runs[i] = s.view(row.Run)
	}
	if next != nil {
		cur := encodeOpenCursor(*next)
		out.NextCursor = &cur
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// encodeOpenCursor writes "<last_heartbeat_at in µs>.<business_id>"; the
// business id may hold dots, the number never does.
func encodeOpenCursor(c projections.OpenCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.LastHeartbeatAt.UnixMicro(), 10) + "." + c.BusinessID))
}

func decodeOpenCursor(s string) (projections.OpenCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return projections.OpenCursor{}, err
	}
	ts, business, ok := strings.Cut(string(raw), ".")
	if !ok || business == "" {
		return projections.OpenCursor{}, fmt.Errorf("bad cursor")
	}
	micros, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return projections.OpenCursor{}, err
	}
	return projections.OpenCursor{LastHeartbeatAt: time.UnixMicro(micros).UTC(), BusinessID: business}, nil
}
