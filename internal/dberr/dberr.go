// Package dberr sorts database errors into the two kinds callers treat
// differently: the database cannot serve right now (unreachable, restarting,
// overloaded, a timeout, a lock not granted, a conflict between
// transactions), which a later retry may not meet again, and everything
// else, which will fail the same way every time.
package dberr

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// Kind names a transient failure for logs and metrics.
type Kind string

// The kinds of transient failure.
const (
	Unreachable Kind = "unreachable" // no connection: refused, reset, closed, shutting down
	Timeout     Kind = "timeout"     // a deadline, statement_timeout or lock_timeout fired
	Overloaded  Kind = "overloaded"  // too many connections, out of resources
	Conflict    Kind = "conflict"    // serialization failure or deadlock between transactions
)

// Transient reports whether err is a failure of the database's availability
// rather than of the statement, and which kind; a retry later may succeed.
// A context cancelled by the caller is not transient (nobody is waiting).
func Transient(err error) (Kind, bool) {
	if err == nil || errors.Is(err, context.Canceled) {
		return "", false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return Timeout, true
	case isNetwork(err):
		return Unreachable, true
	}
	return "", false
}

func transientCode(code string) (Kind, bool) {
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		code == "57P01", code == "57P02", code == "57P03", // admin or crash shutdown, cannot connect now
		code == "25P03": // idle_in_transaction_session_timeout ended our session
		return Unreachable, true
	case code == "57014", code == "55P03": // statement_timeout (query_canceled), lock_not_available
		return Timeout, true
	case strings.HasPrefix(code, "53"), strings.HasPrefix(code, "58"): // insufficient resources, system errors
		return Overloaded, true
	case code == "40001", code == "40P01":
		return Conflict, true
	}
	return "", false
}

func isNetwork(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, puddle.ErrClosedPool) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		pgconn.SafeToRetry(err)
}
