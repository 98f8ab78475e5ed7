package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/runledger/runledger/webhooks"
)

// WebhookAttentionList is the operators' list of the webhook endpoints that
// need attention (failing or disabled), longest trouble first.
type WebhookAttentionList struct {
	Endpoints []WebhookAttentionView `json:"endpoints"`
	// More says that more endpoints need attention than the limit let through.
	More bool `json:"more"`
	// ServerTime is the server's clock when the list was read: ages on the
	// page are counted from it, not from the browser's clock.
	ServerTime time.Time `json:"server_time"`
}

// WebhookAttentionView is one endpoint that needs attention. It carries the
// URL's origin only (never its path or query, where a receiver's token may
// be) and never a secret.
type WebhookAttentionView struct {
	BusinessID        string           `json:"business_id"`
	ID                string           `json:"id"`
	Origin            string           `json:"origin"`
	Description       string           `json:"description"`
	FailingSince      *time.Time       `json:"failing_since"`
	Disabled          bool             `json:"disabled"`
	DisabledReason    string           `json:"disabled_reason,omitempty"`
	DisabledAt        *time.Time       `json:"disabled_at"`
	LastAttempt       *LastAttemptView `json:"last_attempt"`
	PendingDeliveries int              `json:"pending_deliveries"`
	OldestPendingAt   *time.Time       `json:"oldest_pending_at"`
	// OldestPendingAgeSeconds is the oldest pending delivery's age at
	// ServerTime (0: none pending).
	OldestPendingAgeSeconds int64 `json:"oldest_pending_age_seconds"`
}

// LastAttemptView is an endpoint's newest attempt; StatusCode is null when
// no answer came, and Error says why.
type LastAttemptView struct {
	At         time.Time `json:"at"`
	StatusCode *int      `json:"status_code"`
	Error      string    `json:"error,omitempty"`
}

// routesWebhookAttention registers the operators' read across businesses.
// Like GET /v1/runs/open it is not under /v1/businesses/{b}: an operator of
// every business ("*") sees every business's endpoints, an operator of one
// business that business's only; any other role is refused (403).
func (s *Server) routesWebhookAttention() {
	s.handle("GET /v1/webhooks/failing", func(w http.ResponseWriter, r *http.Request) {
		if err := s.listWebhookAttention(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) listWebhookAttention(w http.ResponseWriter, r *http.Request) error {
	claims, _, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if claims.Role != RoleOperator {
		return newProblem(CodeForbidden, fmt.Sprintf("role %q may not do this", claims.Role))
	}
	q := webhooks.AttentionQuery{Limit: 50}
	if claims.BusinessID != AnyBusiness {
		q.BusinessID = claims.BusinessID
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > webhooks.MaxAttentionLimit {
			return fieldProblem("limit", "must be an integer from 1 to 100")
		}
		q.Limit = n
	}
	// The reads pool: this read must never wait behind the appends.
	list, more, err := webhooks.ListNeedingAttention(r.Context(), s.pool, q)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	out := WebhookAttentionList{Endpoints: make([]WebhookAttentionView, len(list)), More: more, ServerTime: now}
	for i, a := range list {
		out.Endpoints[i] = webhookAttentionView(a, now)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func webhookAttentionView(a webhooks.EndpointAttention, now time.Time) WebhookAttentionView {
	v := WebhookAttentionView{BusinessID: a.BusinessID, ID: a.ID.String(), Origin: a.Origin, Description: a.Description,
		FailingSince: timePtr(a.FailingSince), Disabled: a.Disabled, DisabledReason: a.DisabledReason,
		DisabledAt: timePtr(a.DisabledAt), PendingDeliveries: a.PendingDeliveries, OldestPendingAt: timePtr(a.OldestPendingAt)}
	if !a.OldestPendingAt.IsZero() {
		v.OldestPendingAgeSeconds = int64(max(now.Sub(a.OldestPendingAt), 0) / time.Second)
	}
	if a.LastAttempt != nil {
		v.LastAttempt = &LastAttemptView{At: a.LastAttempt.At.UTC(), Error: a.LastAttempt.Error}
		if a.LastAttempt.StatusCode != 0 {
			code := a.LastAttempt.StatusCode
			v.LastAttempt.StatusCode = &code
		}
	}
	return v
}
