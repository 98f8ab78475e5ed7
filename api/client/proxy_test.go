package client_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultProxy stands between the SDK and a real server and injects the
// faults the tests need: it holds requests, answers in the server's place,
// drops answers the server gave, and rewrites them. Every request is logged.
type faultProxy struct {
	URL    string
	target *url.URL
	rp     *httputil.ReverseProxy
	tr     *http.Transport
	srv    *httptest.Server

	mu   sync.Mutex
	rule func(r *http.Request, n int) fault // n counts earlier requests of the same method and path suffix
	seen map[string]int
	log  []logged
}

// fault is what the proxy does with one request; the zero value forwards it.
type fault struct {
	// hold delays forwarding until it is closed (or the client gives up).
	hold <-chan struct{}
	// held, if not nil, is closed when the request starts being held.
	held chan<- struct{}
	// status answers in the server's place with this status (a problem).
	status     int
	retryAfter string
	// cut forwards the request, then closes the connection without the answer.
	cut bool
	// cutStreamAfter forwards a stream and cuts it after this many events.
	cutStreamAfter int
	// rewrite edits the server's JSON answer before it is sent.
	rewrite func([]byte) []byte
}

// logged is one request the proxy saw and what happened to it.
type logged struct {
	method, path, suffix string
	key, lastEventID     string
	status               int // what the client was sent (0 if cut or abandoned)
	replayed             bool
	at                   time.Time // when it was answered (or cut)
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{target: u, tr: &http.Transport{}, seen: map[string]int{}}
	p.rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, Transport: p.tr, FlushInterval: -1}
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	t.Cleanup(func() { p.srv.CloseClientConnections(); p.srv.Close(); p.tr.CloseIdleConnections() })
	return p
}

// setRule replaces the rule (nil forwards everything).
func (p *faultProxy) setRule(rule func(r *http.Request, n int) fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = rule
}

// suffix names the endpoint: "start", "heartbeat", "complete", "cancel", "stream", "policy", …
func suffix(r *http.Request) string {
	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/runs"):
		return "start"
	case strings.HasSuffix(path, "/runs/active/stream"):
		return "stream"
	case strings.HasSuffix(path, "/policy"):
		return "policy"
	}
	return r.Method + " " + path[strings.LastIndex(path, "/")+1:]
}

// requests returns the logged requests of one endpoint ("" for all).
func (p *faultProxy) requests(endpoint string) []logged {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []logged
	for _, l := range p.log {
		if endpoint == "" || l.suffix == endpoint {
			out = append(out, l)
		}
	}
	return out
}

// begin logs a request as it arrives and returns its index for answered.
func (p *faultProxy) begin(l logged) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, l)
	return len(p.log) - 1
}

// answered logs the answer, before its body is sent: a client that has read
// it finds it logged.
func (p *faultProxy) answered(i, status int, header http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log[i].status, p.log[i].at = status, time.Now()
	p.log[i].replayed = header.Get("Idempotent-Replayed") == "true"
}

// cut logs that the request's answer was dropped.
func (p *faultProxy) cut(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log[i].at = time.Now()
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	sfx := suffix(r)
	p.mu.Lock()
	n := p.seen[sfx]
	p.seen[sfx]++
	rule := p.rule
	p.mu.Unlock()
	var f fault
	if rule != nil {
		f = rule(r, n)
	}
	i := p.begin(logged{method: r.Method, path: r.URL.Path, suffix: sfx, key: r.Header.Get("Idempotency-Key"),
		lastEventID: r.Header.Get("Last-Event-ID")})

	if f.hold != nil {
		if f.held != nil {
			close(f.held)
		}
		select {
		case <-f.hold:
		case <-r.Context().Done():
			p.cut(i)
			return // the client gave up; nothing reaches the server
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	switch {
	case f.status != 0:
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		w.Header().Set("Content-Type", "application/problem+json")
		p.answered(i, f.status, w.Header())
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, `{"code":"injected","detail":"injected by the test proxy"}`)
	case f.cut:
		res, err := p.roundTrip(r)
		if err == nil {
			_, _ = io.ReadAll(res.Body)
			res.Body.Close()
		}
		p.cut(i)
		hijackAndClose(w)
	case f.cutStreamAfter > 0:
		p.cutStream(w, r, f.cutStreamAfter)
		p.cut(i)
	case f.rewrite != nil:
		res, err := p.roundTrip(r)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			raw = f.rewrite(raw)
		}
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.Header().Del("Content-Length")
		p.answered(i, res.StatusCode, res.Header)
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(raw)
	default:
		p.rp.ServeHTTP(&statusWriter{ResponseWriter: w, onHeader: func(status int, h http.Header) { p.answered(i, status, h) }}, r)
	}
}

func (p *faultProxy) roundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(context.WithoutCancel(r.Context()))
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = p.target.Scheme, p.target.Host, p.target.Host, ""
	return p.tr.RoundTrip(out)
}

// cutStream forwards a stream's first events, then closes the connection.
func (p *faultProxy) cutStream(w http.ResponseWriter, r *http.Request, events int) {
	res, err := p.roundTrip(r)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, vs := range res.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(res.StatusCode)
	rd := bufio.NewReader(res.Body)
	var block strings.Builder
	for events > 0 {
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		block.WriteString(line)
		if line == "\n" {
			if strings.Contains(block.String(), "\nevent:") || strings.HasPrefix(block.String(), "event:") || strings.HasPrefix(block.String(), "id:") {
				events--
			}
			_, _ = io.WriteString(w, block.String())
			w.(http.Flusher).Flush()
			block.Reset()
		}
	}
	hijackAndClose(w)
}

func hijackAndClose(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// statusWriter reports the answer's status and headers before they are sent.
type statusWriter struct {
	http.ResponseWriter
	onHeader func(status int, h http.Header)
	wrote    bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.wrote = true
		s.onHeader(code, s.Header())
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() { http.NewResponseController(s.ResponseWriter).Flush() }

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
