package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testSecret = "demo-test-secret-demo-test-secret-0123"

// testDemo is a fast demo against a real `serve` whose own TTL (3s) and
// stall threshold (2s) are shorter than the demo asks for, so the demo's
// runs use the server's and the opening act plays in seconds.
func testDemo(t *testing.T, duration time.Duration) (Config, *servetest.Server) {
	t.Helper()
	cfg, srv, _ := testDemoDB(t, duration)
	return cfg, srv
}

// testDemoDB is testDemo that also returns the server's database URL.
func testDemoDB(t *testing.T, duration time.Duration) (Config, *servetest.Server, string) {
	t.Helper()
	db := pgtest.URL(t)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: db, Secret: testSecret,
		Args: []string{"--stale-after", "3s", "--heartbeat-min-interval", "100ms", "--stall-after", "2s", "--reap-interval", "1s"}})
	auth, err := api.NewAuthenticator(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.URL, cfg.Duration, cfg.Businesses, cfg.Seed = srv.URL, duration, 4, 1
	cfg.Mint = func(b, role string) (string, error) { return auth.Mint(b, api.Role(role), time.Hour) }
	cfg.ShortIDs = audit.ShortIDs
	cfg.ActCall, cfg.CallMin, cfg.CallMax, cfg.CallsMin, cfg.CallsMax = 40*time.Millisecond, 10*time.Millisecond, 60*time.Millisecond, 8, 25
	cfg.PauseHold, cfg.Tick, cfg.Poll = 300*time.Millisecond, 200*time.Millisecond, 50*time.Millisecond
	return cfg, srv, db
}

// The opening act plays every ending of a run, each on its own business,
// in this order, before the random dialing: the runs end on the server as
// the act says, the stalled run was seen stalled, the header shows the TTL
// the runs use, and the demo's end leaves no run open and no Go error text.
func TestOpeningActPlaysEveryEnding(t *testing.T) {
	cfg, srv := testDemo(t, 2*time.Second)
	var out bytes.Buffer
	cfg.Out = &out
	rep, err := Play(context.Background(), cfg)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unexpected != 0 {
		t.Fatalf("%d unexpected outcomes", rep.Unexpected)
	}
	want := map[string][]string{ // fate/outcome, in order, of each act business's first runs
		"demo":   {"normal/completed", "pause/completed", "cancel/cancelled", "fail/failed"},
		"demo-2": {"crash/stale"},
		"demo-3": {"dead/forced"}, // after at most two runs the reaper ended first (see actDeadWorker)
		"demo-4": {"stall/completed"},
	}
	for b, seq := range want {
		var got []string
		lost := 0
		for _, r := range rep.Records {
			if b == "demo-3" && r.Business == b && r.Fate == FateDead && r.Outcome == OutStale && lost < deadWorkerAttempts-1 && len(got) == 0 {
				lost++ // the reaper won the race at the TTL; the act plays it again
				continue
			}
			if r.Business == b && len(got) < len(seq) {
				got = append(got, string(r.Fate)+"/"+string(r.Outcome))
			}
		}
		if lost > 0 {
			t.Logf("business %s: the reaper ended %d dead worker's runs before the user's cancel", b, lost)
		}
		if strings.Join(got, " ") != strings.Join(seq, " ") {
			t.Errorf("business %s: the act played %v, want %v", b, got, seq)
		}
	}
	if rep.Pauses == 0 || rep.Stalls == 0 {
		t.Errorf("pauses %d, runs seen stalled %d: want both", rep.Pauses, rep.Stalls)
	}
	if !strings.Contains(out.String(), "runs' TTL 3s") {
		t.Errorf("the header does not show the TTL the runs use (3s)")
	}
	if len(rep.Open) != 0 {
		t.Errorf("runs left open: %+v", rep.Open)
	}

	// The server's view of every run agrees, in human words.
	auth, _ := api.NewAuthenticator(testSecret, nil)
	wantEnd := map[Outcome]string{OutCompleted: "completed/completed", OutFailed: "failed/worker_failed", OutCancelled: "cancelled/cancelled",
		OutStale: "failed/stale", OutForced: "cancelled/cancel_forced", OutEnded: "cancelled/cancelled"}
	for _, rec := range rep.Records {
		tok, _ := auth.Mint(rec.Business, api.RoleUser, time.Hour)
		c, _ := client.New(client.Options{BaseURL: srv.URL, Token: tok})
		var run client.Run
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			// The read model may be a moment behind the run's last event.
			if run, err = c.GetRun(context.Background(), rec.Business, rec.RunID); err != nil || run.Ended() || time.Now().After(deadline) {
				break
			}
		}
		c.CloseIdleConnections()
		if err != nil {
			t.Fatalf("run %s: %v", rec.RunID, err)
		}
		if got := run.Status + "/" + run.EndReason; got != wantEnd[rec.Outcome] {
			t.Errorf("run %s (%s, %s) is %s on the server, want %s", rec.RunID, rec.Fate, rec.Outcome, got, wantEnd[rec.Outcome])
		}
		if run.LastError != "" && run.LastError != errCarrier.Error() {
			t.Errorf("run %s ended with last_error %q", rec.RunID, run.LastError)
		}
	}
}

// The demo names runs by the audit's rule: two runs whose ids end alike
// still read differently.
func TestShortIDsAreUnique(t *testing.T) {
	a := uuid.MustParse("01a224d3-7c62-74e7-9e19-a16bb6480549")
	b := uuid.MustParse("01a224d3-7c62-74e7-9e19-b16bb6480549")
	d := &demo{cfg: Config{ShortIDs: audit.ShortIDs}, runIDs: []uuid.UUID{a, b}}
	if sa, sb := d.short(a.String()), d.short(b.String()); sa == sb || !strings.HasSuffix(a.String(), strings.TrimPrefix(sa, "…")) {
		t.Fatalf("short forms %q and %q", sa, sb)
	}
}

// The random dialing plays every fate, and the demo's end stops the runs it
// still has open as a user would, with a human reason: each ends cancelled,
// its cancel reason "the demo ended", never failed with Go error text; no
// run is left open (crashes are dealt only while their TTL passes before the
// end, so the reaper ends them on screen).
func TestDemoEndCancelsItsRunsWithAHumanReason(t *testing.T) {
	cfg, srv := testDemo(t, 8*time.Second)
	cfg.OpeningAct, cfg.Businesses = false, 3
	var out bytes.Buffer
	cfg.Out = &out
	rep, err := Play(context.Background(), cfg)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unexpected != 0 || len(rep.Open) != 0 {
		t.Fatalf("%d unexpected outcomes, %d runs left open", rep.Unexpected, len(rep.Open))
	}
	for _, o := range []Outcome{OutCompleted, OutFailed, OutCancelled, OutStale, OutEnded} {
		if rep.Count(o) == 0 {
			t.Errorf("no run ended %s", o)
		}
	}
	auth, _ := api.NewAuthenticator(testSecret, nil)
	for _, rec := range rep.Records {
		if rec.Outcome != OutEnded {
			continue
		}
		tok, _ := auth.Mint(rec.Business, api.RoleUser, time.Hour)
		req, _ := http.NewRequest("GET", srv.URL+"/v1/businesses/"+rec.Business+"/runs/"+rec.RunID+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), `"reason":"`+endReason+`"`) || !strings.Contains(string(body), `"outcome":"cancelled"`) {
			t.Errorf("run %s ended by the demo: its events do not say cancelled for %q:\n%s", rec.RunID, endReason, body)
		}
		if strings.Contains(string(body), "context") {
			t.Errorf("run %s: Go error text in its events:\n%s", rec.RunID, body)
		}
	}
}

// The demo is a client of the HTTP contract: of this module it imports the
// worker SDK only (tokens and short ids are handed in by the command).
func TestDemoImportsNoServerPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/runledger/runledger/internal/demo").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/runledger/runledger/") && pkg != "github.com/runledger/runledger/internal/demo" &&
			pkg != "github.com/runledger/runledger/api/client" {
			t.Errorf("internal/demo depends on %s", pkg)
		}
	}
}

// pressCancelAt's cancel is decided once its body is whole, which is never
// before the instant it aims at: a server that notes when the body
// completed sees it at or after that instant.
func TestPressCancelAtIsNeverEarly(t *testing.T) {
	var completed time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		completed = time.Now()
		if r.URL.Path != "/v1/businesses/acme/runs/r1/cancel" || r.Header.Get("Authorization") != "Bearer tok" ||
			string(body) != `{"reason":"`+reasonDead+`"}` {
			http.Error(w, "unexpected request "+r.URL.Path+" "+string(body), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, `{"run_id":"r1","status":"cancelled","end_reason":"cancel_forced"}`)
	}))
	defer srv.Close()
	d := &demo{cfg: Config{URL: srv.URL}, userTokens: map[string]string{"acme": "tok"}, transport: http.DefaultTransport.(*http.Transport).Clone()}
	for range 5 {
		at := time.Now().Add(80 * time.Millisecond)
		run, err := d.pressCancelAt(context.Background(), "acme", "r1", at)
		if err != nil || run.EndReason != "cancel_forced" {
			t.Fatalf("pressCancelAt: %+v, %v", run, err)
		}
		if completed.Before(at) {
			t.Fatalf("the cancel's body was whole %s before the instant it aimed at", at.Sub(completed))
		}
	}
}
