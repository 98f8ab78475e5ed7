package clients_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// faultProxy stands between a client under test and the real server. Per
// business it can hold heartbeats until released, and drop the answer of
// the first complete after the server gave it. It logs every request.
type faultProxy struct {
	URL    string
	target *url.URL
	rp     *httputil.ReverseProxy
	tr     *http.Transport

	mu       sync.Mutex
	holdHB   map[string]chan struct{} // business → closed on release
	cutFirst map[string]bool          // business → the next complete's answer is dropped
	log      []proxied
	reads    map[string]chan struct{} // business → closed when its next GET arrives
}

// proxied is one request the proxy saw.
type proxied struct {
	Business string `json:"business"`
	Endpoint string `json:"endpoint"`
	Key      string `json:"key"`
	Status   int    `json:"status"` // 0: its answer was dropped
	Replayed bool   `json:"replayed"`
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{target: u, tr: &http.Transport{}, holdHB: map[string]chan struct{}{}, cutFirst: map[string]bool{},
		reads: map[string]chan struct{}{}}
	p.rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, Transport: p.tr, FlushInterval: -1}
	srv := httptest.NewServer(p)
	p.URL = srv.URL
	t.Cleanup(func() {
		p.releaseHeartbeats("")
		srv.CloseClientConnections()
		srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// route returns the business and endpoint ("start", "heartbeat", "complete", …) of a request.
func route(r *http.Request) (business, endpoint string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) >= 3 && parts[1] == "businesses" {
		business = parts[2]
	}
	endpoint = parts[len(parts)-1]
	if r.Method == http.MethodPost && endpoint == "runs" {
		endpoint = "start"
	}
	return business, endpoint
}

func (p *faultProxy) holdHeartbeats(business string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holdHB[business] == nil {
		p.holdHB[business] = make(chan struct{})
	}
}

// releaseHeartbeats releases the business's held heartbeats ("" for all).
func (p *faultProxy) releaseHeartbeats(business string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for b, ch := range p.holdHB {
		if business == "" || b == business {
			close(ch)
			delete(p.holdHB, b)
		}
	}
}

// nextRead returns a channel closed when the business's next GET reaches the proxy.
func (p *faultProxy) nextRead(business string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reads[business] == nil {
		p.reads[business] = make(chan struct{})
	}
	return p.reads[business]
}

func (p *faultProxy) cutNextComplete(business string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutFirst[business] = true
}

func (p *faultProxy) requests(business string) []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []proxied{}
	for _, l := range p.log {
		if l.Business == business {
			out = append(out, l)
		}
	}
	return out
}

func (p *faultProxy) record(l proxied) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, l)
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	business, endpoint := route(r)
	l := proxied{Business: business, Endpoint: endpoint, Key: r.Header.Get("Idempotency-Key")}
	p.mu.Lock()
	if ch := p.reads[business]; ch != nil && r.Method == http.MethodGet {
		close(ch)
		delete(p.reads, business)
	}
	hold := p.holdHB[business]
	cut := endpoint == "complete" && p.cutFirst[business]
	if cut {
		delete(p.cutFirst, business)
	}
	p.mu.Unlock()
	if endpoint == "heartbeat" && hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			p.record(l) // the client gave up; nothing reached the server
			return
		}
	}
	if cut {
		body, _ := io.ReadAll(r.Body)
		out := r.Clone(context.WithoutCancel(r.Context()))
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = p.target.Scheme, p.target.Host, p.target.Host, ""
		if res, err := p.tr.RoundTrip(out); err == nil {
			_, _ = io.ReadAll(res.Body)
			res.Body.Close()
		}
		p.record(l)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	p.rp.ServeHTTP(sw, r)
	l.Status, l.Replayed = sw.status, sw.Header().Get("Idempotent-Replayed") == "true"
	p.record(l)
}

// statusWriter remembers the status of the answer it passes on.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() { http.NewResponseController(s.ResponseWriter).Flush() }

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
