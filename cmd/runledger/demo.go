package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
)

// demoConfig configures `runledger demo`; the tests shorten its pace.
type demoConfig struct {
	URL                 string
	Duration            time.Duration // 0: until Ctrl-C
	Workers, Businesses int
	Secret              string
	// StaleAfter is the per-run TTL each start asks for (0: the server's),
	// so that crashed runs are reaped within the demo.
	StaleAfter time.Duration
	// The simulated dialing: each call lasts CallMin..CallMax, each run
	// places CallsMin..CallsMax calls.
	CallMin, CallMax   time.Duration
	CallsMin, CallsMax int
	// PauseHold is how long a simulated user keeps a run paused at least
	// (up to 2.5 times that).
	PauseHold time.Duration
	Tick      time.Duration // how often the summary is drawn
	Seed      uint64
	Out       io.Writer
	Live      bool // redraw the summary in place (a terminal)
}

// runDemo is `runledger demo`: simulated dialers built on the worker SDK
// against a running server, with a live summary.
func runDemo(ctx context.Context, args []string) error {
	cfg := demoConfig{CallMin: 150 * time.Millisecond, CallMax: 1200 * time.Millisecond, CallsMin: 15, CallsMax: 60,
		PauseHold: 2 * time.Second, Tick: time.Second, Seed: uint64(time.Now().UnixNano()), Out: os.Stdout}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "the server (e.g. the one 'make run' started)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	fs.IntVar(&cfg.Workers, "workers", 6, "simulated dialers")
	fs.IntVar(&cfg.Businesses, "businesses", 4, "businesses they dial for (demo, demo-2, …)")
	dataDir := fs.String("data-dir", ".data", "the dev data directory, whose auth-secret signs the tokens unless RUNLEDGER_AUTH_SECRET is set")
	fs.DurationVar(&cfg.StaleAfter, "stale-after", time.Minute, "per-run TTL asked for in each start, so crashed runs are reaped during the demo (0: the server's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.Workers < 1 || cfg.Businesses < 1 {
		return errors.New("demo: --workers and --businesses must be at least 1")
	}
	secret, _, err := signingSecret(*dataDir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cfg.Secret = secret
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		cfg.Live = true
	}
	rep, err := playDemo(ctx, cfg)
	if err != nil {
		return err
	}
	if rep.unexpected > 0 {
		return exitError(1)
	}
	return nil
}

// demo is one demo's state.
type demo struct {
	cfg          demoConfig
	businesses   []string
	workerTokens map[string]string
	users        map[string]*client.Client
	transport    *http.Transport
	logger       *slog.Logger
	policy       client.Policy

	perRunTTL    atomic.Bool
	pauseOffered atomic.Bool
	calls        atomic.Int64
	conflicts    atomic.Int64
	pauses       atomic.Int64

	mu      sync.Mutex
	records []runRecord
	runIDs  []uuid.UUID // every run started, for unique short forms
	biz     map[string]*bizState
	blocked map[string]bool // businesses held by a crashed run
	notes   []string
}

// bizState is what the demo itself knows of a business, beside the server's view.
type bizState struct {
	runID string
	fate  fate
	note  string
}

// demoReport is what a demo did.
type demoReport struct {
	records    []runRecord
	unexpected int
	pauses     int64        // runs paused (and resumed) by a simulated user
	open       []client.Run // runs still open when the demo ended
}

func (r demoReport) count(outcome string) int {
	n := 0
	for _, rec := range r.records {
		if rec.outcome == outcome {
			n++
		}
	}
	return n
}

// playDemo runs the dialers until ctx ends or cfg.Duration passes, drawing
// the summary, then prints the totals. It returns an error only if the demo
// could not start (bad secret, server unreachable).
func playDemo(ctx context.Context, cfg demoConfig) (demoReport, error) {
	auth, err := api.NewAuthenticator(cfg.Secret, nil)
	if err != nil {
		return demoReport{}, fmt.Errorf("demo: %w", err)
	}
	d := &demo{cfg: cfg, workerTokens: map[string]string{}, users: map[string]*client.Client{}, biz: map[string]*bizState{}, blocked: map[string]bool{},
		transport: http.DefaultTransport.(*http.Transport).Clone(), logger: slog.New(slog.DiscardHandler)}
	defer d.transport.CloseIdleConnections()
	d.transport.MaxIdleConnsPerHost = cfg.Workers * 2
	d.perRunTTL.Store(cfg.StaleAfter > 0)
	d.pauseOffered.Store(true)
	for i := range cfg.Businesses {
		b := "demo"
		if i > 0 {
			b = fmt.Sprintf("demo-%d", i+1)
		}
		d.businesses = append(d.businesses, b)
		d.biz[b] = &bizState{}
		if d.workerTokens[b], err = auth.Mint(b, api.RoleWorker, 24*time.Hour); err != nil {
			return demoReport{}, err
		}
		user, err := auth.Mint(b, api.RoleUser, 24*time.Hour)
		if err != nil {
			return demoReport{}, err
		}
		if d.users[b], err = client.New(client.Options{BaseURL: cfg.URL, Token: user, HTTPClient: &http.Client{Transport: d.transport},
			Logger: d.logger, MaxAttempts: 3}); err != nil {
			return demoReport{}, err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	d.policy, err = d.users[d.businesses[0]].Policy(pctx)
	cancel()
	if err != nil {
		return demoReport{}, fmt.Errorf("demo: cannot talk to %s (is `make run` running, with the same secret?): %w", cfg.URL, err)
	}

	playCtx, stop := context.WithCancel(ctx)
	defer stop()
	if cfg.Duration > 0 {
		var stopLater context.CancelFunc
		playCtx, stopLater = context.WithTimeout(playCtx, cfg.Duration)
		defer stopLater()
	}
	started := time.Now()
	var workers sync.WaitGroup
	for i := range cfg.Workers {
		workers.Add(1)
		go func() { defer workers.Done(); d.worker(playCtx, i) }()
	}
	tick := time.NewTicker(cfg.Tick)
	defer tick.Stop()
	drawn, ticks := 0, 0
	for playCtx.Err() == nil {
		select {
		case <-playCtx.Done():
		case <-tick.C:
			ticks++
			if playCtx.Err() == nil && (cfg.Live || ticks%5 == 0) {
				drawn = d.draw(ctx, started, drawn)
			}
		}
	}
	fmt.Fprintln(cfg.Out, "demo: stopping: the dialers complete their runs (crashed runs stay for the reaper) …")
	workers.Wait()
	return d.finish(ctx, started), nil
}

// draw prints the summary (over the previous one when live) and returns its height.
func (d *demo) draw(ctx context.Context, started time.Time, previous int) int {
	lines := d.summary(ctx, started)
	var b strings.Builder
	if d.cfg.Live && previous > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", previous)
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

// summary is one line per business (the server's view of its active run,
// beside what the demo is doing to it), then the running totals.
func (d *demo) summary(ctx context.Context, started time.Time) []string {
	elapsed := time.Since(started).Round(time.Second)
	head := fmt.Sprintf("runledger demo · %s", elapsed)
	if d.cfg.Duration > 0 {
		head += " of " + d.cfg.Duration.String()
	}
	lines := []string{head + fmt.Sprintf(" · %s · %d dialers on %d businesses (TTL %s) · Ctrl-C stops",
		d.cfg.URL, d.cfg.Workers, d.cfg.Businesses, time.Duration(d.policy.StaleAfter))}
	for _, b := range d.businesses {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		run, ok, err := d.users[b].GetActive(qctx, b)
		cancel()
		d.mu.Lock()
		st := *d.biz[b]
		d.mu.Unlock()
		note := st.note
		if st.fate == fateCrash && (!ok || run.RunID != st.runID) {
			note = fmt.Sprintf("run %s: worker crashed; no longer active (silent past its TTL)", d.short(st.runID))
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
			if silent := run.ServerTime.Sub(run.LastHeartbeatAt); silent > 3*time.Duration(d.policy.HeartbeatMinInterval)+time.Second {
				line += fmt.Sprintf("  silent %s", silent.Round(time.Second))
			}
			if run.CancelRequested {
				line += "  cancel requested"
			}
			if run.Paused {
				line += "  paused"
			}
		}
		if note != "" {
			line += "  · " + note
		}
		lines = append(lines, line)
	}
	rep := d.report()
	lines = append(lines, fmt.Sprintf("  runs %d · completed %d · failed %d · cancelled %d · crashed %d · fenced %d · errors %d · calls %d · starts refused (run active) %d · pauses %d",
		len(rep.records), rep.count(outCompleted), rep.count(outFailed), rep.count(outCancelled), rep.count(outCrashed),
		rep.count(outFenced), rep.count(outError), d.calls.Load(), d.conflicts.Load(), d.pauses.Load()))
	d.mu.Lock()
	for _, n := range d.notes[max(0, len(d.notes)-3):] {
		lines = append(lines, "  note: "+n)
	}
	d.mu.Unlock()
	return lines
}

func bar(done, total, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", width) + "]"
	}
	n := done * width / total
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

// finish prints the totals and the runs left open.
func (d *demo) finish(ctx context.Context, started time.Time) demoReport {
	rep := d.report()
	ended := map[string]bool{}
	for _, rec := range rep.records {
		ended[rec.runID] = rec.outcome != outCrashed
	}
	for _, b := range d.businesses {
		// The read models may be a moment behind the runs just completed.
		deadline := time.Now().Add(3 * time.Second)
		for {
			qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			run, ok, err := d.users[b].GetActive(qctx, b)
			cancel()
			if err == nil && ok && ended[run.RunID] && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err == nil && ok {
				rep.open = append(rep.open, run)
			}
			break
		}
	}
	w := d.cfg.Out
	fmt.Fprintf(w, "\ndemo: %s, %d dialers on %d businesses: %d runs\n", time.Since(started).Round(time.Second),
		d.cfg.Workers, d.cfg.Businesses, len(rep.records))
	fmt.Fprintf(w, "  completed %d · failed (simulated carrier errors) %d · cancelled by users %d · crashed (left to the reaper) %d · interrupted by the end of the demo %d · fenced by the SDK %d · unexpected errors %d\n",
		rep.count(outCompleted), rep.count(outFailed), rep.count(outCancelled), rep.count(outCrashed),
		rep.count(outInterrupted), rep.count(outFenced), rep.unexpected)
	fmt.Fprintf(w, "  calls placed %d · starts refused while another run was active %d · pauses %d\n",
		d.calls.Load(), d.conflicts.Load(), d.pauses.Load())
	for _, run := range rep.open {
		why := "a crashed worker's run; it stops counting as active at " + run.StaleAt.Local().Format(time.TimeOnly) + " and the reaper ends it"
		if ended[run.RunID] {
			why = "the demo completed it, but the read model has not caught up"
		}
		fmt.Fprintf(w, "  still active: %s run %s (%d/%d calls): %s\n",
			run.BusinessID, run.RunID, run.CompletedCalls+run.FailedCalls, run.TotalCalls, why)
	}
	for _, rec := range rep.records {
		if rec.outcome == outError {
			fmt.Fprintf(w, "  error: %s run %s (%s): %v\n", rec.business, rec.runID, rec.fate, rec.err)
		}
	}
	d.mu.Lock()
	for _, n := range d.notes {
		fmt.Fprintln(w, "  note:", n)
	}
	d.mu.Unlock()
	return rep
}

func (d *demo) report() demoReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	rep := demoReport{records: append([]runRecord(nil), d.records...), pauses: d.pauses.Load()}
	rep.unexpected = rep.count(outError)
	return rep
}

func (d *demo) record(r runRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records = append(d.records, r)
}

// fail records a run that could not even be attempted.
func (d *demo) fail(business, runID string, f fate, err error) {
	d.record(runRecord{business: business, runID: runID, fate: f, outcome: outError, err: err})
}

func (d *demo) setBusiness(business, runID string, f fate, note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.biz[business]
	s.runID, s.fate, s.note = runID, f, note
}

// notef keeps a note for the summary (each distinct note once).
func (d *demo) notef(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, have := range d.notes {
		if have == n {
			return
		}
	}
	d.notes = append(d.notes, n)
}
