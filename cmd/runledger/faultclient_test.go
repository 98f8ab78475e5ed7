package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// apiClient is a test's HTTP client of a served API, with tokens minted with
// the test secret.
type apiClient struct {
	t    testing.TB
	base string
	http *http.Client
	auth *api.Authenticator
}

func newAPIClient(t testing.TB, base string) *apiClient {
	auth, err := api.NewAuthenticator(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &apiClient{t: t, base: base, http: &http.Client{Timeout: 20 * time.Second}, auth: auth}
}

func (c *apiClient) token(business string, role api.Role) string {
	tok, err := c.auth.MintToken(api.TokenSpec{Business: business, Role: role, Subject: "fault-test", TTL: time.Hour})
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// answer is one HTTP exchange as a client saw it.
type answer struct {
	status  int
	header  http.Header
	body    map[string]any
	latency time.Duration
	err     error // transport failure (reset, refused, timeout)
}

func (a answer) str(key string) string {
	s, _ := a.body[key].(string)
	return s
}

func (c *apiClient) do(method, path, token string, body any) answer {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		return answer{err: err, latency: time.Since(start)}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode, header: res.Header, latency: time.Since(start), err: err}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// tally counts answers by status, and keeps the odd ones.
type tally struct {
	mu       sync.Mutex
	byStatus map[int]int
	odd      []string
}

func (t *tally) add(what string, a answer, ok func(answer) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byStatus == nil {
		t.byStatus = map[int]int{}
	}
	t.byStatus[a.status]++
	if !ok(a) && len(t.odd) < 20 {
		if a.err != nil {
			t.odd = append(t.odd, what+": "+a.err.Error())
		} else {
			raw, _ := json.Marshal(a.body)
			t.odd = append(t.odd, what+": "+http.StatusText(a.status)+" after "+a.latency.Round(time.Millisecond).String()+" "+string(raw))
		}
	}
}
