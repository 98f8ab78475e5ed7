package clients_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
)

// The page's watcher.js reads its own writes: given the position of the
// user's cancel (minPosition), its first answer shows the cancel even with
// the active_runs read model held back. Without it (the control), the same
// first answer shows the run as it was before the cancel.
func TestJSWatcherReadsItsWrites(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("RUNLEDGER_REQUIRE_NODE") != "" {
			t.Fatal("node not found and RUNLEDGER_REQUIRE_NODE is set")
		}
		t.Skip("node not found: the watcher's session test did not run")
	}
	s := serve(t)
	for _, tc := range []struct {
		name    string
		session bool
		want    bool
	}{{"with minPosition", true, true}, {"without", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			business := "js-" + strings.ReplaceAll(tc.name, " ", "-")
			worker, user := s.token(t, business, api.RoleWorker), s.token(t, business, api.RoleUser)
			id := uuid.NewString()
			// This run sends no heartbeat: its own 1 min TTL keeps the reaper
			// (3 s on this server) from ending it while a slow node starts.
			s.call(t, "POST", "/v1/businesses/"+business+"/runs", worker, `{"run_id":"`+id+`","total_calls":10,"worker_id":"w","stale_after":"1m"}`, 201)
			deadline := time.Now().Add(10 * time.Second)
			for s.status(t, "GET", "/v1/businesses/"+business+"/runs/active", user) != 200 {
				if time.Now().After(deadline) {
					t.Fatal("the run never became active")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := s.groups.hold(context.Background(), "active_runs"); err != nil {
				t.Fatal(err)
			}
			res := s.call(t, "POST", "/v1/businesses/"+business+"/runs/"+id+"/cancel", user, `{"reason":"stop"}`, 202)
			position := res.Header.Get("Runledger-Position")
			if _, err := strconv.ParseInt(position, 10, 64); err != nil {
				t.Fatalf("cancel answered Runledger-Position %q", position)
			}
			min := ""
			if tc.session {
				min = position
			}
			s.releaseOnRead(business)
			cmd := exec.Command(node, "test/session.e2e.mjs")
			cmd.Dir = "js"
			cmd.Env = append(os.Environ(), "RUNLEDGER_TEST_URL="+s.proxy.URL, "TOKEN="+user, "BUSINESS="+business, "MIN_POSITION="+min)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node: %v\n%s", err, out)
			}
			var got struct {
				Event           string `json:"event"`
				CancelRequested bool   `json:"cancel_requested"`
			}
			if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil || got.Event != "run" {
				t.Fatalf("the watcher's first answer: %s (%v)", out, err)
			}
			if got.CancelRequested != tc.want {
				t.Fatalf("first answer after the user's own cancel: cancel_requested %v, want %v", got.CancelRequested, tc.want)
			}
		})
	}
}

func (s *served) token(t *testing.T, business string, role api.Role) string {
	t.Helper()
	tok, err := s.auth.Mint(business, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call sends a request to the server and fails the test unless it is answered want.
func (s *served) call(t *testing.T, method, path, token, body string, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, raw, want)
	}
	return res
}

func (s *served) status(t *testing.T, method, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, s.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}
