package client

import (
	"context"
	"errors"
	"net/http"
)

// GetActive returns the business's active run and true, or false if it has
// none (404 no_active_run: also when its open run is silent past the TTL).
// Other failures return *Error or a network error.
func (c *Client) GetActive(ctx context.Context, business string) (Run, bool, error) {
	var run Run
	_, err := c.do(ctx, request{method: http.MethodGet, path: businessPath(business) + "/runs/active", read: true}, &run)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Code == CodeNoActiveRun {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, err
	}
	return run, true, nil
}

// GetRun returns one run in any status; *Error with Code not_found if the
// business has no such run. Like GetActive, it reflects every command this
// client was answered (see Client) unless Options.EventualReads is set.
func (c *Client) GetRun(ctx context.Context, business, runID string) (Run, error) {
	var run Run
	_, err := c.do(ctx, request{method: http.MethodGet, path: runPath(business, runID), read: true}, &run)
	return run, err
}
