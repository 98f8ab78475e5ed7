package domain

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits on free-text input.
const (
	MaxTextLen  = 2000
	MaxIDLen    = 128
	MaxCalls    = 10_000_000
	maxReasonLn = 500
)

var businessIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidateBusinessID returns a ValidationError unless id is 1-64 characters
// of letters, digits, '_', '.' and '-', starting with a letter or digit.
func ValidateBusinessID(id string) error {
	if !businessIDPattern.MatchString(id) {
		return Invalid("business_id", "must be 1-64 characters of letters, digits, '_', '.', '-'")
	}
	return nil
}

// checkProgress enforces that counts never go backwards and never exceed the total.
func checkProgress(r Run, completed, failed int) error {
	var v validation
	switch {
	case completed < 0:
		v.add("completed_calls", "must not be negative")
	case completed < r.CompletedCalls:
		v.add("completed_calls", "must not go backwards (was %d, got %d)", r.CompletedCalls, completed)
	}
	switch {
	case failed < 0:
		v.add("failed_calls", "must not be negative")
	case failed < r.FailedCalls:
		v.add("failed_calls", "must not go backwards (was %d, got %d)", r.FailedCalls, failed)
	}
	if len(v) == 0 && completed+failed > r.TotalCalls {
		v.add("completed_calls", "completed_calls + failed_calls (%d) exceeds total_calls (%d)", completed+failed, r.TotalCalls)
	}
	return v.err()
}

// checkText refuses empty required text, invalid UTF-8, text longer than max
// bytes, and NUL characters, which PostgreSQL's jsonb cannot store.
func checkText(v *validation, field, s string, max int, required bool) {
	switch {
	case required && s == "":
		v.add(field, "is required")
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		v.add(field, "must not contain NUL characters")
	case len(s) > max:
		v.add(field, "must be at most %d bytes", max)
	}
}
