package api

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// A page cursor is where a keyset-paged list resumes: an instant (at the
// database's microsecond precision) and a tie-breaker (a run id, a log
// position), opaque to clients. Every paged list of the API uses this one
// codec.

// encodeCursor returns the opaque cursor of (at, tie).
func encodeCursor(at time.Time, tie string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "." + tie))
}

// decodeCursor returns the instant and tie-breaker of a cursor this API
// returned, or an error for anything else.
func decodeCursor(s string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", err
	}
	ts, tie, ok := strings.Cut(string(raw), ".")
	if !ok || tie == "" {
		return time.Time{}, "", errors.New("malformed cursor")
	}
	micros, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", err
	}
	return time.UnixMicro(micros).UTC(), tie, nil
}
