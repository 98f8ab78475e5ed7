package webhooks

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Schedule is the wait before each attempt: the first at once, then 5 s,
// 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after the attempt before; a
// delivery whose eighth attempt fails has failed.
var Schedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DisableAfter is how long an endpoint may fail every attempt before it is disabled.
const DisableAfter = 5 * 24 * time.Hour

// jitterFraction spreads retries of many deliveries that failed together.
const jitterFraction = 0.1

// nextWait is the wait before attempt n+1 after attempt n (1-based) failed,
// with up to ±10% jitter (jitter returns a number in [0, 1)); ok is false when
// the schedule is exhausted.
func nextWait(n int, jitter func() float64) (time.Duration, bool) {
	if n >= len(Schedule) {
		return 0, false
	}
	base := Schedule[n]
	if jitter == nil {
		jitter = rand.Float64
	}
	return base + time.Duration((2*jitter()-1)*jitterFraction*float64(base)), true
}

// maxRetryAfter bounds a receiver's Retry-After.
const maxRetryAfter = 10 * time.Hour

// retryAfter reads a 429 or 503 answer's Retry-After (seconds or an HTTP
// date, relative to now); ok is false without a usable one.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
