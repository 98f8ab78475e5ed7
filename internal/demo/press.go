package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/runledger/runledger/api/client"
)

// cancelWhenSilent presses Cancel on a dead worker's run the moment the
// server's clock passes its stale_at: not before (that would be a graceful
// cancel), and as soon after as it can, since the reaper ends the run then
// too. The server's clock is read from server_time: the offset is bounded
// from below by the fastest of a few reads, so the cancel is sent when the
// server's clock is surely past stale_at.
func (d *demo) cancelWhenSilent(ctx context.Context, b, id string) (client.Run, error) {
	u := d.users[b]
	run, err := u.GetRun(ctx, b, id)
	if err != nil {
		return run, err
	}
	if run.Ended() || run.StaleAt == nil {
		return run, &client.Error{Code: client.CodeRunEnded, Run: &run}
	}
	if !sleep(ctx, time.Until(run.StaleAt.Add(-run.ServerTime.Sub(time.Now())))-300*time.Millisecond) {
		return run, ctx.Err()
	}
	offset := time.Duration(-1 << 62) // the server's clock minus ours, at least
	staleAt := *run.StaleAt
	for range 7 {
		r, err := u.GetRun(ctx, b, id)
		received := time.Now()
		if err != nil {
			return r, err
		}
		if r.Ended() || r.StaleAt == nil {
			return r, &client.Error{Code: client.CodeRunEnded, Run: &r}
		}
		offset, staleAt = max(offset, r.ServerTime.Sub(received)), *r.StaleAt
	}
	// Every read's server_time was taken before we received it, so the
	// server's clock is at least our clock plus offset: at our instant
	// staleAt-offset it has passed stale_at.
	return d.pressCancelAt(ctx, b, id, staleAt.Add(-offset))
}

// pressCancelAt sends a user's cancel of run id whose server-side decision
// happens just after our instant at, never before it: the request goes out
// ahead of time with all but the last byte of its body, and the last byte
// is written at at (the last two milliseconds waited out on the clock,
// since a timer may wake late). The server decides once the body is whole,
// so the HTTP overhead of the request does not delay the press. It answers
// like client.CancelRun: a run_ended *client.Error if the run had ended.
func (d *demo) pressCancelAt(ctx context.Context, b, id string, at time.Time) (client.Run, error) {
	body, err := json.Marshal(map[string]string{"reason": reasonDead})
	if err != nil {
		return client.Run{}, err
	}
	if !sleep(ctx, time.Until(at)-50*time.Millisecond) {
		return client.Run{}, ctx.Err()
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL+"/v1/businesses/"+url.PathEscape(b)+"/runs/"+url.PathEscape(id)+"/cancel", pr)
	if err != nil {
		return client.Run{}, err
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+d.userTokens[b])
	req.Header.Set("Content-Type", "application/json")
	go func() {
		if _, err := pw.Write(body[:len(body)-1]); err != nil {
			return
		}
		if sleep(ctx, time.Until(at)-2*time.Millisecond) {
			for time.Now().Before(at) {
			}
			_, _ = pw.Write(body[len(body)-1:])
		}
		pw.CloseWithError(ctx.Err())
	}()
	res, err := (&http.Client{Transport: d.transport}).Do(req)
	if err != nil {
		return client.Run{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return client.Run{}, fmt.Errorf("cancel %s: %w", id, err)
	}
	if res.StatusCode >= 300 {
		var problem struct {
			Code   string      `json:"code"`
			Detail string      `json:"detail"`
			Run    *client.Run `json:"run"`
		}
		_ = json.Unmarshal(raw, &problem)
		return client.Run{}, &client.Error{Status: res.StatusCode, Code: problem.Code, Detail: problem.Detail, Run: problem.Run,
			Method: http.MethodPost, Path: req.URL.Path}
	}
	var run client.Run
	if err := json.Unmarshal(raw, &run); err != nil {
		return run, fmt.Errorf("cancel %s: %d: %w", id, res.StatusCode, err)
	}
	return run, nil
}
