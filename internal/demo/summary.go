package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/runledger/runledger/api/client"
)

// draw prints the summary (over the previous one when live) and returns its height.
func (d *demo) draw(ctx context.Context, previous int) int {
	lines := d.summary(ctx)
	var b strings.Builder
	if d.cfg.Live && previous > 0 {
		// Home and clear rather than move up by the lines drawn: a line
		// wider than the terminal wraps, and would be counted wrong.
		b.WriteString("\x1b[H\x1b[2J")
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	if !d.cfg.Live {
		b.WriteString("\n")
	}
	_, _ = io.WriteString(d.cfg.Out, b.String())
	return len(lines)
}

// header says what the demo does and the policy its runs use.
func (d *demo) header() string {
	head := fmt.Sprintf("runledger demo · %s", time.Since(d.started).Round(time.Second))
	if d.cfg.Duration > 0 {
		head += " of " + d.cfg.Duration.String()
	}
	return head + fmt.Sprintf(" · %s · %d dialers on %d businesses · Ctrl-C stops\n  runs' TTL %s (the reaper ends a run silent that long) · stall after %s",
		d.cfg.URL, d.cfg.Workers, d.cfg.Businesses, d.ttl, d.stall)
}

// summary is one line per business (the server's view of its active run,
// beside what the demo is doing to it), then the running totals.
func (d *demo) summary(ctx context.Context) []string {
	lines := strings.Split(d.header(), "\n")
	if d.acting.Load() {
		lines[len(lines)-1] += " · opening act playing: every ending of a run, one business each"
	}
	for _, b := range d.businesses {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		run, ok, err := d.users[b].GetActive(qctx, b)
		cancel()
		d.mu.Lock()
		st := *d.biz[b]
		d.mu.Unlock()
		note := st.note
		if (st.fate == FateCrash || st.fate == FateDead) && st.runID != "" && (!ok || run.RunID != st.runID) {
			note = fmt.Sprintf("run %s: its worker is gone; not active (silent past its TTL) · %s", d.short(st.runID), st.note)
		}
		var line string
		switch {
		case err != nil:
			line = fmt.Sprintf("  %-9s ?          %v", b, err)
		case !ok:
			line = fmt.Sprintf("  %-9s —          no active run", b)
		default:
			line = fmt.Sprintf("  %-9s %s  %-9s %s %4d/%-4d %3d failed", b, d.short(run.RunID), run.Status,
				bar(run.CompletedCalls+run.FailedCalls, run.TotalCalls, 20), run.CompletedCalls+run.FailedCalls, run.TotalCalls, run.FailedCalls)
			for _, f := range runFlags(run, 3*time.Duration(d.policy.HeartbeatMinInterval)+time.Second) {
				line += "  " + f
			}
		}
		if note != "" {
			line += "  · " + note
		}
		lines = append(lines, line)
	}
	lines = append(lines, strings.Split("  "+d.totals(d.report()), "\n")...)
	d.mu.Lock()
	for _, n := range d.notes[max(0, len(d.notes)-3):] {
		lines = append(lines, "  note: "+n)
	}
	d.mu.Unlock()
	return lines
}

// totals counts what each counter says it counts.
func (d *demo) totals(rep Report) string {
	ended := 0
	for _, r := range rep.Records {
		if r.Outcome != OutCrashed {
			ended++
		}
	}
	return fmt.Sprintf("runs started %d, ended %d: completed %d · failed (carrier) %d · cancelled by a user %d · reaped as stale %d\n"+
		"    cancel forced %d · cancelled as the demo ended %d · fenced by the SDK %d · unexpected %d\n"+
		"  calls placed %d · runs paused %d · runs seen stalled %d · starts refused while the business had an active run (by design; the dialer retries) %d",
		d.runsStarted.Load(), ended, rep.Count(OutCompleted), rep.Count(OutFailed), rep.Count(OutCancelled), rep.Count(OutStale),
		rep.Count(OutForced), rep.Count(OutEnded), rep.Count(OutFenced), rep.Unexpected, d.calls.Load(), d.pauses.Load(), d.stalls.Load(), d.waits.Load())
}

// runFlags are the words the summary adds to an active run's line, each
// only when true (issue 19 item 1): "silent" is a run with no heartbeat for
// longer than silentAfter; "stalled" is a run whose worker beats without
// progress, with how long since its last progress. A silent run is not
// called stalled: nobody knows whether its worker still works.
func runFlags(run client.Run, silentAfter time.Duration) []string {
	var out []string
	silent := run.ServerTime.Sub(run.LastHeartbeatAt)
	if silent > silentAfter {
		out = append(out, fmt.Sprintf("silent %s", silent.Round(time.Second)))
	}
	if run.CancelRequested {
		out = append(out, "cancel requested")
	}
	if run.Paused {
		out = append(out, "paused")
	}
	if run.Stalled && silent <= silentAfter {
		stalled := "stalled"
		if run.StalledSince != nil { // stalled_since is the last progress plus stall_after
			lastProgress := run.StalledSince.Add(-time.Duration(run.StallAfter))
			stalled += fmt.Sprintf(": no progress for %s", run.ServerTime.Sub(lastProgress).Round(time.Second))
		}
		out = append(out, stalled)
	}
	return out
}

func bar(done, total, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", width) + "]"
	}
	n := done * width / total
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

// finish settles what the demo can still learn (a crashed run the reaper
// has ended since), prints the totals and the runs left open, and returns
// the report.
func (d *demo) finish() Report {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, rec := range d.report().Records {
		if rec.Outcome != OutCrashed {
			continue
		}
		if run, err := d.users[rec.Business].GetRun(ctx, rec.Business, rec.RunID); err == nil && run.Ended() {
			out := map[string]Outcome{"stale": OutStale, "cancel_forced": OutForced, "cancelled": OutEnded}[run.EndReason]
			if out != "" {
				d.setOutcome(rec.RunID, out, run.EndReason)
			}
		}
	}
	rep := d.report()
	for _, b := range d.businesses {
		// The user's client reads with the position of every run's end (its
		// own cancels, and its workers' via joinSession): no run the demo
		// saw end is answered as open.
		if run, ok, err := d.users[b].GetActive(ctx, b); err == nil && ok {
			rep.Open = append(rep.Open, run)
		}
	}
	w := d.cfg.Out
	fmt.Fprintf(w, "\ndemo: %s, %d dialers on %d businesses, runs' TTL %s\n  %s\n", time.Since(d.started).Round(time.Second),
		d.cfg.Workers, d.cfg.Businesses, d.ttl, d.totals(rep))
	for _, run := range rep.Open {
		why := "the demo did not see it end"
		if rep.crashed(run.RunID) {
			why = "its worker crashed; cancel requested (\"" + endReason + "\"): the reaper ends it at " + stale(run) + ", as cancelled"
		}
		fmt.Fprintf(w, "  still open: %s run %s (%d/%d calls): %s\n",
			run.BusinessID, run.RunID, run.CompletedCalls+run.FailedCalls, run.TotalCalls, why)
	}
	for _, rec := range rep.Records {
		if rec.Outcome == OutError {
			fmt.Fprintf(w, "  unexpected: %s run %s (%s): %v (end reason %q)\n", rec.Business, rec.RunID, rec.Fate, rec.Err, rec.EndReason)
		}
	}
	d.mu.Lock()
	for _, n := range d.notes {
		fmt.Fprintln(w, "  note:", n)
	}
	d.mu.Unlock()
	return rep
}

// crashed reports whether run id is one whose worker the demo crashed.
func (r Report) crashed(id string) bool {
	for _, rec := range r.Records {
		if rec.RunID == id {
			return rec.Outcome == OutCrashed
		}
	}
	return false
}

func stale(run client.Run) string {
	if run.StaleAt == nil {
		return "its TTL"
	}
	return run.StaleAt.Local().Format(time.TimeOnly)
}
