package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/runledger/runledger/webhooks"
)

// WebhookView is an endpoint in JSON. Secret is set only in the answers to
// creation and rotation.
type WebhookView struct {
	ID             string     `json:"id"`
	BusinessID     string     `json:"business_id"`
	URL            string     `json:"url"`
	Events         []string   `json:"events"`
	Description    string     `json:"description"`
	Secret         string     `json:"secret,omitempty"`
	Disabled       bool       `json:"disabled"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	FailingSince   *time.Time `json:"failing_since,omitempty"`
	// PreviousSecretUntil ends a rotation window in which the previous
	// secret still signs beside the new one.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

// WebhookList is a business's endpoints, oldest first.
type WebhookList struct {
	Webhooks []WebhookView `json:"webhooks"`
}

// DeliveryView is a delivery in JSON, with every attempt.
type DeliveryView struct {
	ID            string        `json:"id"`
	WebhookID     string        `json:"webhook_id"`
	MessageID     string        `json:"message_id"`
	EventID       string        `json:"event_id"`
	EventType     string        `json:"event_type"`
	Position      int64         `json:"position"`
	Status        string        `json:"status"`
	Attempts      []AttemptView `json:"attempts"`
	NextAttemptAt *time.Time    `json:"next_attempt_at"`
	CreatedAt     time.Time     `json:"created_at"`
}

// AttemptView is one attempt in JSON; StatusCode is absent when no answer came.
type AttemptView struct {
	Attempt       int        `json:"attempt"`
	At            time.Time  `json:"at"`
	StatusCode    *int       `json:"status_code"`
	Duration      string     `json:"duration"`
	Response      string     `json:"response"`
	Error         string     `json:"error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
}

// DeliveryList is an endpoint's newest deliveries.
type DeliveryList struct {
	Deliveries []DeliveryView `json:"deliveries"`
}

type webhookRequest struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Description *string   `json:"description"`
}

// routesWebhooks registers the endpoints of issue 26: an operator, or a
// user of the business, manages them.
func (s *Server) routesWebhooks() {
	const base = "/v1/businesses/{b}/webhooks"
	s.route("POST "+base, usersOnly, s.createWebhook)
	s.route("GET "+base, usersOnly, s.listWebhooks)
	s.route("GET "+base+"/{w}", usersOnly, s.getWebhook)
	s.route("DELETE "+base+"/{w}", usersOnly, s.deleteWebhook)
	s.route("POST "+base+"/{w}/disable", usersOnly, s.setWebhookDisabled(true))
	s.route("POST "+base+"/{w}/enable", usersOnly, s.setWebhookDisabled(false))
	s.route("POST "+base+"/{w}/rotate-secret", usersOnly, s.rotateWebhookSecret)
	s.route("GET "+base+"/{w}/deliveries", usersOnly, s.listDeliveries)
	s.route("POST "+base+"/{w}/deliveries/{d}/retry", usersOnly, s.retryDelivery)
	s.routesWebhookAttention()
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, c call) error {
	var req webhookRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := required("url", req.URL); err != nil {
		return err
	}
	if req.Events == nil {
		return fieldProblem("events", "is required")
	}
	n := webhooks.NewEndpoint{URL: *req.URL, Events: *req.Events}
	if req.Description != nil {
		n.Description = *req.Description
	}
	e, err := s.webhooks.Create(r.Context(), c.business, n)
	if err != nil {
		return webhookError(err)
	}
	w.Header().Set("Location", r.URL.Path+"/"+e.ID.String())
	writeJSON(w, http.StatusCreated, webhookView(e, true))
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, c call) error {
	list, err := s.webhooks.List(r.Context(), c.business)
	if err != nil {
		return err
	}
	out := WebhookList{Webhooks: make([]WebhookView, len(list))}
	for i, e := range list {
		out.Webhooks[i] = webhookView(e, false)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := parseRunID(r.PathValue("w"), "webhook_id")
	if err != nil {
		return err
	}
	e, err := s.webhooks.Get(r.Context(), c.business, id)
	if err != nil {
		return webhookError(err)
	}
	writeJSON(w, http.StatusOK, webhookView(e, false))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := parseRunID(r.PathValue("w"), "webhook_id")
	if err != nil {
		return err
	}
	if err := s.webhooks.Delete(r.Context(), c.business, id); err != nil {
		return webhookError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setWebhookDisabled(disabled bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c call) error {
		id, err := parseRunID(r.PathValue("w"), "webhook_id")
		if err != nil {
			return err
		}
		e, err := s.webhooks.SetDisabled(r.Context(), c.business, id, disabled)
		if err != nil {
			return webhookError(err)
		}
		writeJSON(w, http.StatusOK, webhookView(e, false))
		return nil
	}
}

func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := parseRunID(r.PathValue("w"), "webhook_id")
	if err != nil {
		return err
	}
	e, err := s.webhooks.RotateSecret(r.Context(), c.business, id)
	if err != nil {
		return webhookError(err)
	}
	writeJSON(w, http.StatusOK, webhookView(e, true))
	return nil
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := parseRunID(r.PathValue("w"), "webhook_id")
	if err != nil {
		return err
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			return fieldProblem("limit", "must be an integer from 1 to 100")
		}
	}
	list, err := s.webhooks.Deliveries(r.Context(), c.business, id, limit)
	if err != nil {
		return webhookError(err)
	}
	out := DeliveryList{Deliveries: make([]DeliveryView, len(list))}
	for i, d := range list {
		out.Deliveries[i] = deliveryView(d)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := parseRunID(r.PathValue("w"), "webhook_id")
	if err != nil {
		return err
	}
	did, err := parseRunID(r.PathValue("d"), "delivery_id")
	if err != nil {
		return err
	}
	d, err := s.webhooks.Retry(r.Context(), c.business, id, did)
	if err != nil {
		return webhookError(err)
	}
	if s.cfg.OnWebhookRetry != nil {
		s.cfg.OnWebhookRetry()
	}
	writeJSON(w, http.StatusAccepted, deliveryView(d))
	return nil
}

func webhookError(err error) error {
	if errors.Is(err, webhooks.ErrNotFound) {
		return newProblem(CodeNotFound, "webhook endpoint or delivery not found")
	}
	return err
}

func webhookView(e webhooks.Endpoint, withSecret bool) WebhookView {
	v := WebhookView{ID: e.ID.String(), BusinessID: e.BusinessID, URL: e.URL, Events: e.Events, Description: e.Description,
		Disabled: e.Disabled, DisabledReason: e.DisabledReason, DisabledAt: timePtr(e.DisabledAt),
		FailingSince: timePtr(e.FailingSince), CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC()}
	if withSecret {
		v.Secret = e.Secret
	}
	if e.PreviousSecret != "" {
		v.PreviousSecretUntil = timePtr(e.PreviousUntil)
	}
	if v.Events == nil {
		v.Events = []string{}
	}
	return v
}

func deliveryView(d webhooks.Delivery) DeliveryView {
	v := DeliveryView{ID: d.ID.String(), WebhookID: d.EndpointID.String(), MessageID: webhooks.MessageID(d.ID),
		EventID: d.EventID.String(), EventType: d.EventType, Position: d.Position, Status: d.Status,
		NextAttemptAt: timePtr(d.NextAttemptAt), CreatedAt: d.CreatedAt.UTC(), Attempts: make([]AttemptView, len(d.Log))}
	for i, a := range d.Log {
		av := AttemptView{Attempt: a.Number, At: a.At.UTC(), Duration: a.Duration.String(), Response: a.Response,
			Error: a.Error, NextAttemptAt: timePtr(a.NextAttemptAt)}
		if a.StatusCode != 0 {
			code := a.StatusCode
			av.StatusCode = &code
		}
		v.Attempts[i] = av
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
