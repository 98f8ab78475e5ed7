package dberr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runledger/runledger/internal/dberr"
)

func TestTransient(t *testing.T) {
	cases := []struct {
		name string
		err  error
		kind dberr.Kind
		ok   bool
	}{
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, dberr.Unreachable, true},
		{"connection failure", fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "08006"}), dberr.Unreachable, true},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, dberr.Timeout, true},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, dberr.Timeout, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, dberr.Overloaded, true},
		{"serialization", &pgconn.PgError{Code: "40001"}, dberr.Conflict, true},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), dberr.Timeout, true},
		{"conn closed", fmt.Errorf("x: %w", pgconn.ErrConnClosed), dberr.Unreachable, true},
		{"raise exception", &pgconn.PgError{Code: "P0001"}, "", false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, "", false},
		{"caller cancelled", context.Canceled, "", false},
		{"plain error", errors.New("boom"), "", false},
		{"nil", nil, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kind, ok := dberr.Transient(c.err)
			if kind != c.kind || ok != c.ok {
				t.Fatalf("Transient(%v) = %q %v, want %q %v", c.err, kind, ok, c.kind, c.ok)
			}
		})
	}
}
