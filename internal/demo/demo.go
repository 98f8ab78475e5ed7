package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api/client"
)

// Config configures a demo; the tests shorten its pace.
type Config struct {
	URL                 string
	Duration            time.Duration // 0: until ctx ends (Ctrl-C)
	Workers, Businesses int
	// Mint returns a token of role ("worker" or "user") for business.
	Mint func(business, role string) (string, error)
	// ShortIDs names runs by the audit's rule (the shortest tails that tell
	// them apart); nil shows whole ids.
	ShortIDs func([]uuid.UUID) map[uuid.UUID]string
	// StaleAfter and StallAfter are the run's own TTL and stall threshold
	// asked for in each start (the contract allows 1m-24h), so that a crashed
	// worker is reaped and a stall shows within about a minute. When the
	// server's own value is shorter, the demo's runs use the server's.
	StaleAfter, StallAfter time.Duration
	// OpeningAct plays the scripted act before the random dialing.
	OpeningAct bool
	// ActCall is how long one call of the opening act lasts.
	ActCall time.Duration
	// The random dialing: each call lasts CallMin..CallMax, each run places
	// CallsMin..CallsMax calls.
	CallMin, CallMax   time.Duration
	CallsMin, CallsMax int
	// PauseHold is how long a simulated user keeps a run paused at least
	// (up to 2.5 times that).
	PauseHold time.Duration
	Tick      time.Duration // how often the summary is drawn
	Seed      uint64
	Out       io.Writer
	Live      bool // redraw the summary in place (a terminal)
	// Poll is how often the demo looks at a run it waits on (default 500ms).
	Poll time.Duration
}

// Defaults returns the pace of `runledger demo`.
func Defaults() Config {
	return Config{URL: "http://127.0.0.1:8080", Workers: 6, Businesses: 4, StaleAfter: time.Minute, StallAfter: time.Minute,
		OpeningAct: true, ActCall: 500 * time.Millisecond, CallMin: 150 * time.Millisecond, CallMax: 1200 * time.Millisecond,
		CallsMin: 15, CallsMax: 60, PauseHold: 2 * time.Second, Tick: time.Second, Seed: uint64(time.Now().UnixNano())}
}

// Report is what a demo did.
type Report struct {
	Records []Record
	// Unexpected counts runs that ended in a way the demo did not cause.
	Unexpected int
	Pauses     int64
	// Stalls counts runs the demo saw flagged stalled.
	Stalls int64
	// Open are the runs still open when the demo ended (a crashed worker's,
	// which the reaper ends at its TTL).
	Open []client.Run
}

// Count returns how many runs ended with outcome.
func (r Report) Count(outcome Outcome) int {
	n := 0
	for _, rec := range r.Records {
		if rec.Outcome == outcome {
			n++
		}
	}
	return n
}

// Record is one run the demo started and how it ended.
type Record struct {
	Business, RunID string
	Fate            Fate
	Outcome         Outcome
	// EndReason is the server's end_reason, once the demo has seen it.
	EndReason string
	Err       error
}

// demo is one demo's state.
type demo struct {
	cfg          Config
	businesses   []string
	workerTokens map[string]string
	userTokens   map[string]string
	users        map[string]*client.Client
	transport    *http.Transport
	logger       *slog.Logger
	policy       client.Policy
	ttl, stall   time.Duration // what the demo's runs use
	deadline     time.Time     // when the random dialing stops (zero: at Ctrl-C)
	started      time.Time

	calls       atomic.Int64
	waits       atomic.Int64
	pauses      atomic.Int64
	runsStarted atomic.Int64
	stalls      atomic.Int64 // runs the demo saw flagged stalled
	acting      atomic.Bool  // the opening act is playing

	// runsCtx is the ctx of every run's SDK call; it is cancelled only as a
	// last resort, after the demo asked its runs to stop.
	runsCtx   context.Context
	abortRuns context.CancelFunc

	mu      sync.Mutex
	records []Record
	runIDs  []uuid.UUID // every run started, for unique short forms
	biz     map[string]*bizState
	blocked map[string]bool // businesses held by a crashed run
	notes   []string
	ending  bool            // the demo is ending: no new runs
	endedBy map[string]bool // runs the demo's end cancelled
	// userCancels are the simulated users' cancels, by run, from the moment
	// one is decided: the demo's end waits for one in flight, so that a run
	// the user stopped first is not counted as stopped by the demo.
	userCancels map[string]*userCancel
}

// bizState is what the demo itself knows of a business, beside the server's view.
type bizState struct {
	runID string
	fate  Fate
	note  string
	// actDone is closed when the opening act no longer holds the business.
	actDone chan struct{}
}

// Play runs the opening act and the dialers until ctx ends or cfg.Duration
// passes (the opening act always plays to its end unless ctx ends), draws
// the summary, asks every run still open to stop ("the demo ended"), then
// prints the totals. It returns an error only if the demo could not start
// (no token, server unreachable).
func Play(ctx context.Context, cfg Config) (Report, error) {
	d, err := newDemo(ctx, cfg)
	if err != nil {
		return Report{}, err
	}
	defer d.transport.CloseIdleConnections()
	cfg = d.cfg

	d.started = time.Now()
	playCtx, stop := context.WithCancel(ctx)
	defer stop()
	if cfg.Duration > 0 {
		d.deadline = d.started.Add(cfg.Duration)
		var stopLater context.CancelFunc
		playCtx, stopLater = context.WithDeadline(playCtx, d.deadline)
		defer stopLater()
	}
	d.runsCtx, d.abortRuns = context.WithCancel(context.WithoutCancel(ctx))
	defer d.abortRuns()

	var act sync.WaitGroup
	if cfg.OpeningAct {
		d.startAct(ctx, &act)
	} else {
		for _, st := range d.biz {
			close(st.actDone)
		}
	}
	var workers sync.WaitGroup
	for i := range cfg.Workers {
		workers.Add(1)
		go func() { defer workers.Done(); d.worker(playCtx, i) }()
	}
	actDone := make(chan struct{})
	go func() { act.Wait(); close(actDone) }()

	tick := time.NewTicker(cfg.Tick)
	defer tick.Stop()
	drawn, ticks := 0, 0
	for playing := true; playing; {
		select {
		case <-ctx.Done():
			playing = false
		case <-playCtx.Done():
			// The random dialing is over; the opening act plays to its end.
			select {
			case <-actDone:
				playing = false
			case <-ctx.Done():
				playing = false
			case <-tick.C:
				drawn = d.draw(ctx, drawn)
			}
		case <-tick.C:
			ticks++
			if cfg.Live || ticks%5 == 0 {
				drawn = d.draw(ctx, drawn)
			}
		}
	}
	stop()
	fmt.Fprintln(cfg.Out, "demo: ending: any run still open is cancelled (\"the demo ended\"); its worker stops at its next heartbeat …")
	d.end(ctx)
	workers.Wait()
	act.Wait()
	return d.finish(), nil
}

// newDemo prepares a demo: its businesses, their tokens and user clients,
// and the server's policy.
func newDemo(ctx context.Context, cfg Config) (*demo, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	d := &demo{cfg: cfg, workerTokens: map[string]string{}, userTokens: map[string]string{}, users: map[string]*client.Client{}, biz: map[string]*bizState{},
		blocked: map[string]bool{}, endedBy: map[string]bool{}, userCancels: map[string]*userCancel{},
		transport: http.DefaultTransport.(*http.Transport).Clone(), logger: slog.New(slog.DiscardHandler)}
	d.transport.MaxIdleConnsPerHost = cfg.Workers*2 + 8
	for i := range cfg.Businesses {
		b := "demo"
		if i > 0 {
			b = fmt.Sprintf("demo-%d", i+1)
		}
		d.businesses = append(d.businesses, b)
		d.biz[b] = &bizState{actDone: make(chan struct{})}
		var err error
		if d.workerTokens[b], err = cfg.Mint(b, "worker"); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		user, err := cfg.Mint(b, "user")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		d.userTokens[b] = user
		if d.users[b], err = client.New(client.Options{BaseURL: cfg.URL, Token: user, HTTPClient: &http.Client{Transport: d.transport},
			Logger: d.logger, MaxAttempts: 3}); err != nil {
			return nil, err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	policy, err := d.users[d.businesses[0]].Policy(pctx)
	cancel()
	if err != nil {
		d.transport.CloseIdleConnections()
		return nil, fmt.Errorf("demo: cannot talk to %s (is `make run` running, with the same secret?): %w", cfg.URL, err)
	}
	d.policy = policy
	d.ttl, d.stall = runPolicy(time.Duration(policy.StaleAfter), cfg.StaleAfter), runPolicy(time.Duration(policy.StallAfter), cfg.StallAfter)
	return d, nil
}

// joinSession gives business's user client the position of what worker
// client c has written (its run's start, heartbeats and end), so the user's
// next reads reflect them, the first time, even while a read model is behind.
func (d *demo) joinSession(business string, c *client.Client) {
	d.users[business].ObservePosition(c.Position())
}

// runPolicy is what the demo's runs use: what the demo asks for, or the
// server's own value when that is shorter (a start then sends none).
func runPolicy(server, asked time.Duration) time.Duration {
	if asked <= 0 || (server > 0 && server < asked) {
		return server
	}
	return asked
}

// userCancel is a simulated user's cancel of one run: done is closed once
// its request has been answered, ok says whether it was recorded.
type userCancel struct {
	done chan struct{}
	ok   bool
}

// startUserCancel records that the user of run id is about to press Cancel,
// unless the demo is ending (its end stops the run instead); finish reports
// the answer. Deciding under the lock that also starts the end orders the
// two: the end either waits for this cancel or this cancel is not sent.
func (d *demo) startUserCancel(id string) (finish func(ok bool), send bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ending {
		return nil, false
	}
	uc := &userCancel{done: make(chan struct{})}
	d.userCancels[id] = uc
	return func(ok bool) { uc.ok = ok; close(uc.done) }, true
}

// endReason is the human reason the demo gives the runs it stops at its end.
const endReason = "the demo ended"

// end asks every run the demo still has open to stop: a user's cancel with
// endReason, which the worker learns at its next heartbeat and then
// completes the run as cancelled (a dead worker's run is cancelled at once
// if it is silent past its TTL, else the reaper ends it at its TTL, as
// cancelled). Workers that have not stopped after two heartbeat intervals
// and a margin are stopped by the demo, and complete as failed with a human
// error.
func (d *demo) end(ctx context.Context) {
	d.mu.Lock()
	d.ending = true
	open := map[string]string{}
	users := map[string]*userCancel{}
	for b, st := range d.biz {
		if st.runID != "" {
			open[b] = st.runID
			users[st.runID] = d.userCancels[st.runID]
		}
	}
	d.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for b, id := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if uc := users[id]; uc != nil { // the user pressed Cancel first
				select {
				case <-uc.done:
				case <-cctx.Done():
				}
				if uc.ok {
					return // stopped by its user's cancel, not by the demo's end
				}
			}
			d.mu.Lock()
			d.endedBy[id] = true
			d.mu.Unlock()
			if _, err := d.users[b].CancelRun(cctx, b, id, endReason); err != nil && !errors.Is(err, client.ErrRunEnded) {
				d.notef("cancel %s at the end: %v", d.short(id), err)
			}
		}()
	}
	wg.Wait()
	grace := 2*max(time.Duration(d.policy.HeartbeatMinInterval), time.Second) + 5*time.Second
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			d.abortRuns()
		case <-d.runsCtx.Done():
		}
	}()
}

func (d *demo) report() Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	rep := Report{Records: append([]Record(nil), d.records...), Pauses: d.pauses.Load(), Stalls: d.stalls.Load()}
	rep.Unexpected = rep.Count(OutError)
	return rep
}

func (d *demo) record(r Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records = append(d.records, r)
}

// fail records a run that could not even be attempted.
func (d *demo) fail(business, runID string, f Fate, err error) {
	d.record(Record{Business: business, RunID: runID, Fate: f, Outcome: OutError, Err: err})
}

func (d *demo) setBusiness(business, runID string, f Fate, note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.biz[business]
	s.runID, s.fate, s.note = runID, f, note
}

// settle records that run id of business has ended, unless another run of
// the business has started since (its dialer may have started it the moment
// this one ended): that one stays the business's open run.
func (d *demo) settle(business, id, note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.biz[business]; s.runID == id || s.runID == "" {
		s.runID, s.fate, s.note = "", "", note
	}
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

// short names a run by the audit's rule: the tail of its id, lengthened
// until no two runs this demo started read the same.
func (d *demo) short(id string) string {
	u, err := uuid.Parse(id)
	if err != nil || d.cfg.ShortIDs == nil {
		return id
	}
	d.mu.Lock()
	ids := append(append([]uuid.UUID(nil), d.runIDs...), u)
	d.mu.Unlock()
	return "…" + d.cfg.ShortIDs(ids)[u]
}

// newRunID is a fresh run id, remembered for short names.
func (d *demo) newRunID() uuid.UUID {
	id := uuid.Must(uuid.NewV7())
	d.mu.Lock()
	d.runIDs = append(d.runIDs, id)
	d.mu.Unlock()
	return id
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
