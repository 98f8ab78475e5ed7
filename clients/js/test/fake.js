// A fake runledger for the watcher's tests: a fetch that answers
// GET …/runs/active and …/runs/{id} from a run it holds, and serves
// …/runs/active/stream as a stream the test pushes events into. Its server
// clock runs at the speed of the (fake) timers but may differ from the
// browser's Date by skewMs.
export const BUSINESS = 'acme';
export const RUN_ID = '0190f1d2-3c4b-7a5e-8f60-1a2b3c4d5e6f';
export const TTL_MS = 3 * 60 * 1000;

export function fakeServer({ skewMs = 0, streamStatus = 200, wait = false } = {}) {
  const encoder = new TextEncoder();
  const server = {
    calls: [],
    streams: [],
    run: null,
    streamStatus,
    // wait: the server offers GET …/runs/active/stream?wait=true (the
    // business's stream, open while no run is active); without it, an older
    // server's 404 no_active_run.
    wait,
    nextId: 1,
    serverNow: () => Date.now() - skewMs,

    /** start makes the run active, last heard of now. */
    start(total = 10) {
      const now = iso(server.serverNow());
      server.run = {
        run_id: RUN_ID, business_id: BUSINESS, status: 'running', active: true, cancel_requested: false,
        total_calls: total, completed_calls: 0, failed_calls: 0, pending_calls: total, worker_id: 'dialer-1',
        started_at: now, last_heartbeat_at: now, stale_at: iso(server.serverNow() + TTL_MS), ended_at: null,
        end_reason: null, last_error: null, version: 1, server_time: now,
      };
      server.push('run', (s) => s.wait); // only the business's streams outlive runs
      return server.run;
    },

    /** heartbeat records progress (a sign of life) and pushes it to open streams. */
    heartbeat(completed) {
      const r = server.run;
      r.completed_calls = completed;
      r.pending_calls = r.total_calls - completed - r.failed_calls;
      r.last_heartbeat_at = iso(server.serverNow());
      r.stale_at = iso(server.serverNow() + TTL_MS);
      r.version++;
      server.push('run');
    },

    /** end ends the run and pushes its end to open streams. */
    end(status = 'completed') {
      Object.assign(server.run, { status, active: false, stale_at: null, ended_at: iso(server.serverNow()),
        end_reason: status, version: server.run.version + 1 });
      server.push('ended');
      server.pushWaiting();
    },

    /** silence leaves the run running but says nothing more (a worker that died). */
    push(event, to = () => true) {
      const data = JSON.stringify({ ...server.run, server_time: iso(server.serverNow()) });
      const chunk = encoder.encode(`id: ${server.nextId++}\nevent: ${event}\ndata: ${data}\n\n`);
      for (const s of server.streams) if (!s.closed && to(s)) s.ctl.enqueue(chunk);
    },

    /** pushWaiting tells the business's streams that no run is active. */
    pushWaiting() {
      const data = JSON.stringify({ server_time: iso(server.serverNow()), run: null });
      const chunk = encoder.encode(`event: waiting\ndata: ${data}\n\n`);
      for (const s of server.streams) if (!s.closed && s.wait) s.ctl.enqueue(chunk);
    },

    openStreams() {
      return server.streams.filter((s) => !s.closed);
    },

    fetch: async (url, init = {}) => {
      const call = { url, headers: { ...(init.headers ?? {}) }, signal: init.signal };
      server.calls.push(call);
      if (init.signal?.aborted) throw new DOMException('aborted', 'AbortError');
      const path = new URL(url, 'http://runledger.test').pathname;
      if (path.endsWith('/runs/active/stream')) {
        if (server.streamStatus !== 200) return json(server.streamStatus, { code: 'internal', detail: 'injected' });
        const waiting = server.wait && new URL(url, 'http://runledger.test').searchParams.get('wait') === 'true';
        const live = server.run && active(server);
        if (!live && !waiting) return json(404, { code: 'no_active_run' });
        const s = { closed: false, ctl: null, wait: waiting };
        const body = new ReadableStream({
          start(ctl) {
            s.ctl = ctl;
          },
          cancel() {
            s.closed = true;
          },
        });
        init.signal?.addEventListener('abort', () => {
          if (!s.closed) {
            s.closed = true;
            s.ctl.error(new DOMException('aborted', 'AbortError'));
          }
        });
        server.streams.push(s);
        queueMicrotask(() => (live ? server.push('run', (x) => x === s) : server.pushWaiting()));
        return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
      }
      if (path.endsWith('/runs/active')) {
        if (!server.run || !active(server)) return json(404, { code: 'no_active_run' });
        return json(200, { ...server.run, server_time: iso(server.serverNow()) });
      }
      if (server.run && path.endsWith(`/runs/${server.run.run_id}`)) {
        return json(200, { ...server.run, server_time: iso(server.serverNow()) });
      }
      return json(404, { code: 'not_found' });
    },
  };
  return server;
}

function active(server) {
  const r = server.run;
  return r.status === 'running' && Date.parse(r.stale_at) > server.serverNow();
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': status === 200 ? 'application/json' : 'application/problem+json' } });
}

export function iso(ms) {
  return new Date(ms).toISOString();
}
