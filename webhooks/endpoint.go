package webhooks

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// The event types an endpoint may subscribe to.
const (
	RunStarted   = "run.started"
	RunCompleted = "run.completed"
	RunFailed    = "run.failed"
	RunCancelled = "run.cancelled"
	RunPaused    = "run.paused"
	RunResumed   = "run.resumed"
)

// EventTypes lists every event type, in the order the documentation gives.
var EventTypes = []string{RunStarted, RunCompleted, RunFailed, RunCancelled, RunPaused, RunResumed}

// Limits on an endpoint's fields.
const (
	maxURLLen         = 2048
	maxDescriptionLen = 500
	secretPrefix      = "whsec_"
	secretBytes       = 24
	// RotationWindow is how long the previous secret still signs after a rotation.
	RotationWindow = 24 * time.Hour
)

// ErrNotFound means no endpoint or delivery of that id exists for the business.
var ErrNotFound = errors.New("webhook endpoint or delivery not found")

// Endpoint is a registered receiver of one business's events. Secret and
// PreviousSecret never leave the package's callers except at creation and
// rotation.
type Endpoint struct {
	ID             uuid.UUID
	BusinessID     string
	URL            string
	Events         []string
	Description    string
	Secret         string
	PreviousSecret string
	// PreviousUntil ends the rotation window (zero: none).
	PreviousUntil  time.Time
	Disabled       bool
	DisabledReason string
	DisabledAt     time.Time
	// FailingSince is the first failed attempt since the last success (zero: none).
	FailingSince time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Secrets returns the secrets that sign at now: the current one, and the
// previous one during its rotation window.
func (e Endpoint) Secrets(now time.Time) []string {
	out := []string{e.Secret}
	if e.PreviousSecret != "" && now.Before(e.PreviousUntil) {
		out = append(out, e.PreviousSecret)
	}
	return out
}

// NewSecret returns a fresh signing secret: whsec_ and base64 of 24 random bytes.
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey is the HMAC key of a secret: the base64 part after whsec_.
func secretKey(secret string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
}

// NewEndpoint is what a caller registers.
type NewEndpoint struct {
	URL         string
	Events      []string
	Description string
}

// validate returns a *domain.ValidationError naming each invalid field; the
// URL's scheme and target are judged by a Policy separately.
func (n NewEndpoint) validate() error {
	var fields []domain.FieldError
	add := func(field, reason string) { fields = append(fields, domain.FieldError{Field: field, Reason: reason}) }
	switch {
	case n.URL == "":
		add("url", "is required")
	case len(n.URL) > maxURLLen:
		add("url", "must be at most 2048 bytes")
	}
	if len(n.Events) == 0 {
		add("events", "must name at least one event type ("+strings.Join(EventTypes, ", ")+")")
	}
	for _, ev := range n.Events {
		if !slices.Contains(EventTypes, ev) {
			add("events", "unknown event type "+quote(ev)+" (want one of "+strings.Join(EventTypes, ", ")+")")
			break
		}
	}
	switch {
	case !utf8.ValidString(n.Description) || strings.IndexByte(n.Description, 0) >= 0:
		add("description", "must be valid UTF-8 without NUL characters")
	case len(n.Description) > maxDescriptionLen:
		add("description", "must be at most 500 bytes")
	}
	if len(fields) > 0 {
		return &domain.ValidationError{Fields: fields}
	}
	return nil
}

// events returns the subscribed types without repeats, in EventTypes order.
func (n NewEndpoint) events() []string {
	var out []string
	for _, t := range EventTypes {
		if slices.Contains(n.Events, t) {
			out = append(out, t)
		}
	}
	return out
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
