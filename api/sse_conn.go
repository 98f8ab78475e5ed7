package api

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"
)

// A stream spends nearly all its life waiting, and what it holds while it
// waits is what a replica's watchers cost. Served as an ordinary handler,
// an HTTP/1.1 stream keeps net/http's connection state for its whole life:
// the connection's goroutine (the handler's), its background-read
// goroutine, a 4 KiB read buffer, a 4 KiB write buffer, a 2 KiB chunking
// buffer and the parsed request, about 34 KiB a watcher in all (B9's heap
// profile at 10,000 watchers). So once a stream has passed every check and
// is about to send its first byte, it takes the connection over (Hijack)
// and runs on a goroutine of its own, writing its chunks straight to the
// socket; the handler returns and net/http lets go of the rest. A second,
// small goroutine blocked in Read tells the stream when the client leaves.
//
// What a client sees does not change: 200, text/event-stream, chunked, the
// same events; the response says Connection: close, since a taken-over
// connection is closed when its stream ends rather than reused. A request
// that cannot be taken over (HTTP/2, HTTP/1.0, a writer without Hijack)
// streams through the ResponseWriter as before.

// streamWriteTimeout bounds one write to a stream's client: a client that
// stops reading ends its stream instead of holding its goroutine forever.
const streamWriteTimeout = 10 * time.Second

// sseOutput is where a stream's bytes go: a taken-over connection or the
// handler's ResponseWriter. Each write is sent at once (flushed).
type sseOutput interface {
	send(p string) error
}

// serveSSE answers 200 with an event stream and runs stream until it
// returns (the client left, the server is closing, or the stream ended),
// then calls done. It takes the connection over when it can and returns
// at once, stream running on its own goroutine with a context that ends
// when the client leaves; otherwise it runs stream here, with the
// request's context. Once the server is closing it starts no stream: it
// calls done and returns a 503 problem.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, done func(), stream func(context.Context, *sseStream)) error {
	if r.Method == http.MethodHead { // the head alone: a HEAD has no body to stream
		done()
		setSSEHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if !s.startDetached() {
		done()
		return retryable(CodeUnavailable, "this server is shutting down; reconnect", time.Second)
	}
	lastID, _ := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
	if conn, ok := takeOver(w, r); ok {
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		path, id := r.URL.Path, requestID(r.Context()) // not r: the request is let go
		go conn.awaitClose(cancel)
		go func() {
			defer s.endDetached()
			defer cancel()
			// The client sees its response end only once the stream's slot
			// and subscription are given back (done): one that reconnects at
			// once finds its slot free.
			defer conn.finish()
			defer done()
			defer s.recoverStream(path, id)
			st := s.newSSEStream(conn, lastID)
			defer st.stop()
			stream(ctx, st)
		}()
		return nil
	}
	defer s.endDetached() // this stream is the handler's: Shutdown waits for it too
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // the server's write timeout must not cut a stream
	setSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	st := s.newSSEStream(&writerOutput{w: w, rc: rc}, lastID)
	defer done()
	defer st.stop()
	stream(r.Context(), st)
	return nil
}

// setSSEHeaders sets an event stream's headers.
func setSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// startDetached counts a stream that CloseStreams must wait for, unless the
// server is closing (then it reports false).
func (s *Server) startDetached() bool {
	s.detachMu.Lock()
	defer s.detachMu.Unlock()
	if s.isClosing() {
		return false
	}
	s.detached.Add(1)
	s.detachedOpen.Add(1)
	return true
}

// endDetached counts a stream's end.
func (s *Server) endDetached() {
	s.detachedOpen.Add(-1)
	s.detached.Done()
}

// recoverStream logs a taken-over stream's panic (no handler is left to
// recover it), with its stack, and ends that stream alone.
func (s *Server) recoverStream(path, requestID string) {
	if p := recover(); p != nil {
		stack := debug.Stack()
		if w, ok := p.(wakePanic); ok { // raised again from a wake worker: its own stack
			p, stack = w.value, w.stack
		}
		s.logger.Error("panic in stream", "path", path, "panic", p, "stack", string(stack), "request_id", requestID)
	}
}

// takeOver hijacks an HTTP/1.1 request's connection and writes the stream's
// response head on it; it reports false, having written nothing, when the
// request cannot be taken over.
func takeOver(w http.ResponseWriter, r *http.Request) (*connOutput, bool) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return nil, false
	}
	// The head is built before the hijack: the headers set so far
	// (X-Request-ID) belong to the request's ResponseWriter.
	h := w.Header().Clone()
	setSSEHeaders(h)
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, false
	}
	out := &connOutput{conn: conn}
	if err := out.writeHead(buf, h); err != nil {
		conn.Close()
		out.broken = true // the client is gone: the stream ends at its first write
	}
	return out, true
}

// connOutput is a taken-over connection: each send is one HTTP chunk.
type connOutput struct {
	conn   net.Conn
	broken bool
}

// writeHead sends the status line and headers through the hijack's buffer
// (which holds nothing else: the request had no body), then drops it.
func (c *connOutput) writeHead(buf *bufio.ReadWriter, h http.Header) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := buf.WriteString("HTTP/1.1 200 OK\r\n"); err != nil {
		return err
	}
	if err := h.Write(buf); err != nil {
		return err
	}
	if _, err := buf.WriteString("\r\n"); err != nil {
		return err
	}
	return buf.Flush()
}

func (c *connOutput) send(p string) error {
	switch {
	case c.broken:
		return net.ErrClosed
	case p == "":
		return nil // an empty chunk is the last one
	}
	chunk := make([]byte, 0, len(p)+16)
	chunk = strconv.AppendInt(chunk, int64(len(p)), 16)
	chunk = append(chunk, "\r\n"...)
	chunk = append(chunk, p...)
	chunk = append(chunk, "\r\n"...)
	_ = c.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := c.conn.Write(chunk); err != nil {
		c.broken = true
		return err
	}
	return nil
}

// finish ends the response with the last chunk and closes the connection.
func (c *connOutput) finish() {
	if !c.broken {
		_ = c.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, _ = c.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = c.conn.Close()
}

// awaitClose reads until the connection fails or closes (a client of an
// event stream sends nothing more), then calls gone: the client left, or
// the stream ended and closed the connection.
func (c *connOutput) awaitClose(gone context.CancelFunc) {
	var b [64]byte
	for {
		if _, err := c.conn.Read(b[:]); err != nil {
			gone()
			return
		}
	}
}

// writerOutput is a stream served through its ResponseWriter.
type writerOutput struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (o *writerOutput) send(p string) error {
	if _, err := fmt.Fprint(o.w, p); err != nil {
		return err
	}
	return o.rc.Flush()
}

// offStack runs work on another goroutine and returns its result, so that
// the stack work grows to is not kept by the stream's goroutine while it
// waits (see follow). The work goes to an idle wakeWorker when there is one
// (its stack already grown: no copying per wake), else to a new goroutine
// that becomes a worker for a while. A panic in work is raised again here,
// on the stream's goroutine.
func offStack(work func() bool) bool {
	t := wakeTask{work: work, done: make(chan wakeOutcome, 1)}
	select {
	case wakeTasks <- t:
	default:
		wakeWorkers.Add(1)
		go wakeWorker(t)
	}
	o := <-t.done
	if o.panicked != nil {
		panic(wakePanic{value: o.panicked, stack: o.stack})
	}
	return o.goOn
}

// offStackDo is offStack for work without a result.
func offStackDo(work func()) { offStack(func() bool { work(); return true }) }

// wakePanic is a wake's panic raised again on its stream's goroutine, with
// the stack where it happened.
type wakePanic struct {
	value any
	stack []byte
}

type wakeTask struct {
	work func() bool
	done chan wakeOutcome
}

type wakeOutcome struct {
	goOn     bool
	panicked any
	stack    []byte
}

// wakeTasks hands a wake's work to an idle worker.
var wakeTasks = make(chan wakeTask)

// wakeWorkerIdle is how long a worker waits for more work before it ends:
// a burst of wakes (a batch that moved many watched runs) starts workers,
// and they are gone a second after it.
const wakeWorkerIdle = time.Second

// wakeWorkers is the number of wake workers running.
var wakeWorkers atomic.Int64

// wakeWorker runs first, then what offStack hands it, until it has been
// idle for wakeWorkerIdle (offStack counted it in wakeWorkers).
func wakeWorker(first wakeTask) {
	defer wakeWorkers.Add(-1)
	first.run()
	idle := time.NewTimer(wakeWorkerIdle)
	defer idle.Stop()
	for {
		select {
		case t := <-wakeTasks:
			t.run()
			idle.Reset(wakeWorkerIdle)
		case <-idle.C:
			return
		}
	}
}

func (t wakeTask) run() {
	var o wakeOutcome
	defer func() {
		if p := recover(); p != nil {
			o.panicked, o.stack = p, debug.Stack()
		}
		t.done <- o
	}()
	o.goOn = t.work()
}
