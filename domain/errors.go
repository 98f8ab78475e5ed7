package domain

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Sentinel errors; the typed errors below match them with errors.Is.
var (
	ErrRunEnded        = errors.New("run has ended")
	ErrActiveRunExists = errors.New("business already has an active run")
	ErrRunNotFound     = errors.New("run not found")
	ErrRunExists       = errors.New("run already exists")
	ErrNotStale        = errors.New("run is not silent past the TTL")
	ErrValidation      = errors.New("invalid input")
)

// RunEndedError refuses a command on an ended run and carries its final state.
type RunEndedError struct{ Final Run }

func (e *RunEndedError) Error() string {
	return fmt.Sprintf("run %s has ended (%s, %s)", e.Final.ID, e.Final.Status, e.Final.EndReason)
}

// Is makes errors.Is(err, ErrRunEnded) true.
func (e *RunEndedError) Is(target error) bool { return target == ErrRunEnded }

// ActiveRunExistsError refuses a start because another run of the business is active.
type ActiveRunExistsError struct{ RunID uuid.UUID }

func (e *ActiveRunExistsError) Error() string {
	return fmt.Sprintf("business already has an active run %s", e.RunID)
}

// Is makes errors.Is(err, ErrActiveRunExists) true.
func (e *ActiveRunExistsError) Is(target error) bool { return target == ErrActiveRunExists }

// FieldError is one invalid field and why.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// ValidationError refuses input and names each offending field.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Reason
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrValidation) true.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

// Invalid returns a ValidationError for one field.
func Invalid(field, reason string) *ValidationError {
	return &ValidationError{Fields: []FieldError{{Field: field, Reason: reason}}}
}

// validation collects field errors; err returns nil when there are none.
type validation []FieldError

func (v *validation) add(field, format string, args ...any) {
	*v = append(*v, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v validation) err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Fields: v}
}
