// Unit tests of watcher.js with Node's built-in runner: `node --test api/web/test/`.
// The pure decisions are tested directly; the Watcher's wiring is tested
// against a scripted fetch (real Response and ReadableStream objects, real
// timers with short durations).
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULTS,
  SSEParser,
  Watcher,
  backoffDelay,
  barVerdict,
  classifyAnswer,
  serverClockOffset,
  shouldShowBar,
  validateRun,
} from '../static/assets/watcher.js';

const RUN_ID = '0190f0c2-7b1e-7cc3-9d7e-3f5a2b1c4d5e';

function run(over = {}) {
  return {
    run_id: RUN_ID,
    business_id: 'demo',
    status: 'running',
    active: true,
    cancel_requested: false,
    total_calls: 100,
    completed_calls: 30,
    failed_calls: 5,
    pending_calls: 65,
    abandoned_calls: 0,
    worker_id: 'dialer-1',
    started_at: '2026-11-28T09:00:00Z',
    last_heartbeat_at: '2026-11-28T09:05:00Z',
    stale_at: '2026-11-28T09:20:00Z',
    ended_at: null,
    end_reason: null,
    last_error: null,
    version: 7,
    server_time: '2026-11-28T09:05:01Z',
    ...over,
  };
}

describe('validateRun', () => {
  test('accepts the contract run JSON, with or without the pause and stall fields', () => {
    assert.equal(validateRun(run(), 'demo').ok, true);
    assert.equal(validateRun(run({ paused: true, paused_at: '2026-11-28T09:04:00Z', pause_reason: 'lunch', stalled: false, stalled_since: null }), 'demo').ok, true);
    const ended = run({ status: 'completed', active: false, stale_at: null, ended_at: '2026-11-28T09:06:00Z', end_reason: 'completed' });
    assert.equal(validateRun(ended, 'demo').ok, true);
  });

  const bad = {
    'not an object': 'running',
    'an array': [run()],
    null: null,
    'a run id that is not a UUID': run({ run_id: 'x' }),
    'another business': run({ business_id: 'globex' }),
    'an unknown status': run({ status: 'stuck' }),
    'active as a string': run({ active: 'true' }),
    'a negative count': run({ failed_calls: -1, pending_calls: 71 }),
    'a fractional count': run({ completed_calls: 30.5 }),
    'counts past the total': run({ completed_calls: 99, pending_calls: -4 }),
    'pending that does not add up': run({ pending_calls: 64 }),
    'a running run without stale_at': run({ stale_at: null }),
    'a bad server_time': run({ server_time: 'yesterday' }),
    'a missing last_heartbeat_at': run({ last_heartbeat_at: undefined }),
    'paused as a string': run({ paused: 'no' }),
    'a worker_id that is not a string': run({ worker_id: 7 }),
  };
  for (const [name, value] of Object.entries(bad)) {
    test(`refuses ${name}`, () => {
      const v = validateRun(value, 'demo');
      assert.equal(v.ok, false);
      assert.equal(typeof v.error, 'string');
    });
  }
});

describe('barVerdict and shouldShowBar', () => {
  const at = (iso) => Date.parse(iso);
  test('a running, active run shows until its stale_at, by the server clock', () => {
    assert.deepEqual(barVerdict(run(), at('2026-11-28T09:05:01Z')), { show: true, msLeft: 899000 });
    assert.equal(barVerdict(run(), at('2026-11-28T09:19:59.999Z')).show, true);
    assert.deepEqual(barVerdict(run(), at('2026-11-28T09:20:00Z')), { show: false, reason: 'stale' });
  });
  test('anything but running and active removes the bar', () => {
    const now = at('2026-11-28T09:05:01Z');
    assert.deepEqual(barVerdict(run({ active: false }), now), { show: false, reason: 'not_active' });
    for (const status of ['completed', 'failed', 'cancelled']) {
      assert.deepEqual(barVerdict(run({ status, active: false, stale_at: null }), now), { show: false, reason: 'ended' });
    }
    assert.equal(shouldShowBar(run(), now, 'demo'), true);
    assert.equal(shouldShowBar(run({ active: false }), now, 'demo'), false);
    assert.equal(shouldShowBar({ status: 'running', active: true }, now, 'demo'), false, 'a partial message');
    assert.equal(shouldShowBar(run(), now, 'globex'), false, 'another business');
    assert.equal(shouldShowBar('{"status":"running","active":true}', now), false, 'a string');
  });
  test('a paused or stalled run is still judged by liveness alone', () => {
    const now = at('2026-11-28T09:05:01Z');
    assert.equal(shouldShowBar(run({ paused: true }), now, 'demo'), true);
    assert.equal(shouldShowBar(run({ stalled: true, stalled_since: '2026-11-28T09:01:00Z' }), now, 'demo'), true);
  });
});

describe('serverClockOffset', () => {
  test('a local clock an hour ahead or behind changes nothing once the offset is applied', () => {
    const server = '2026-11-28T09:05:01Z';
    for (const skew of [3600e3, -3600e3, 0, 5 * 3600e3]) {
      const local = Date.parse(server) + skew;
      const offset = serverClockOffset(server, local);
      assert.equal(offset + skew, 0);
      // 10 s later on the local clock, the server's clock reads server + 10 s.
      const serverNow = local + 10e3 + offset;
      assert.equal(serverNow, Date.parse('2026-11-28T09:05:11Z'));
      assert.equal(barVerdict(run(), serverNow).show, true);
      assert.equal(barVerdict(run(), local + 15 * 60e3 + offset).show, false);
    }
    assert.ok(Number.isNaN(serverClockOffset('not a time', 0)));
  });
});

describe('backoffDelay', () => {
  test('grows exponentially from the base, is capped, and is jittered within [d/2, d]', () => {
    const opts = { baseMs: 250, capMs: 4000 };
    const expect = [250, 500, 1000, 2000, 4000, 4000, 4000];
    expect.forEach((d, attempt) => {
      assert.equal(backoffDelay(attempt, opts, () => 0), d / 2);
      assert.equal(backoffDelay(attempt, opts, () => 0.999999) <= d, true);
      assert.equal(backoffDelay(attempt, opts, () => 0.5), d * 0.75);
    });
    for (let i = 0; i < 1000; i++) {
      const v = backoffDelay(3, opts);
      assert.ok(v >= 1000 && v <= 2000, `${v}`);
    }
  });
  test('the default schedule reaches maxErrors within five seconds', () => {
    let total = 0;
    for (let attempt = 0; attempt < DEFAULTS.maxErrors - 1; attempt++) total += backoffDelay(attempt, {}, () => 0.999999);
    assert.ok(total < 4000, `${total}`);
  });
});

describe('classifyAnswer', () => {
  const cases = [
    [200, '', 'run'],
    [404, 'no_active_run', 'none'],
    [404, 'not_found', 'denied'],
    [401, 'unauthorized', 'denied'],
    [403, 'forbidden', 'denied'],
    [404, '', 'retry'],
    [500, 'internal', 'retry'],
    [503, 'read_model_behind', 'retry'],
    [502, '', 'retry'],
    [429, '', 'retry'],
  ];
  for (const [status, code, want] of cases) {
    test(`${status} ${code || '(no code)'} → ${want}`, () => assert.equal(classifyAnswer(status, code), want));
  }
});

describe('SSEParser', () => {
  test('parses events, ids, multi-line data and comments, across chunk boundaries and line endings', () => {
    const p = new SSEParser();
    const out = [];
    const chunks = ['\uFEFFretry: 1000\n\n: keep', 'alive\n\nid: 7\nevent: run\ndata: {"a":', '1}\r', '\n\r\nevent: ended\ndata: x\ndata: y\r\r', 'data: no event name\n\n'];
    for (const c of chunks) out.push(...p.push(c));
    assert.deepEqual(out, [
      { event: 'run', data: '{"a":1}', id: '7' },
      { event: 'ended', data: 'x\ny', id: '7' },
      { event: 'message', data: 'no event name', id: '7' },
    ]);
  });
  test('an event name without data dispatches nothing and does not leak into the next event', () => {
    const p = new SSEParser();
    assert.deepEqual(p.push('event: run\n\ndata: 1\n\n'), [{ event: 'message', data: '1', id: '' }]);
  });
  test('a field without a colon and a value without the space are read as the standard says', () => {
    const p = new SSEParser();
    assert.deepEqual(p.push('data\ndata:x\n\n'), [{ event: 'message', data: '\nx', id: '' }]);
  });
});

// --- the Watcher against a scripted server ---------------------------------

/** timers counts the timers set through the globals, to prove stop() leaves none. */
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const live = new Set();
globalThis.setTimeout = (fn, ms, ...args) => {
  const id = realSetTimeout(() => {
    live.delete(id);
    fn(...args);
  }, ms);
  live.add(id);
  return id;
};
globalThis.clearTimeout = (id) => {
  live.delete(id);
  realClearTimeout(id);
};

/**
 * fakeServer answers the watcher's fetches: handlers by path suffix return a
 * Response, or a stream (see sse()). Every request is recorded.
 */
function fakeServer(handlers) {
  const requests = [];
  const open = new Set();
  const fetch = async (url, init) => {
    const path = new URL(url, 'http://x').pathname;
    const req = { url, path, headers: init.headers, signal: init.signal };
    requests.push(req);
    if (init.signal.aborted) throw new DOMException('aborted', 'AbortError');
    const key = Object.keys(handlers).find((k) => path.endsWith(k));
    const h = handlers[key];
    if (!h) return json(404, { code: 'not_found' });
    const res = await h(req);
    if (res instanceof Error) throw res;
    return res;
  };
  return { fetch, requests, open };
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': status === 200 ? 'application/json' : 'application/problem+json' } });
}

/** sse returns a stream response and a handle to send events and close it; aborting the request errors it. */
function sse(req) {
  let ctl;
  const enc = new TextEncoder();
  const body = new ReadableStream({ start: (c) => (ctl = c) });
  const h = {
    aborted: false,
    send(event, data, id) {
      ctl.enqueue(enc.encode(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
    },
    raw(text) {
      ctl.enqueue(enc.encode(text));
    },
    close() {
      ctl.close();
    },
    fail() {
      ctl.error(new TypeError('network error'));
    },
  };
  req.signal.addEventListener('abort', () => {
    h.aborted = true;
    try {
      ctl.error(new DOMException('aborted', 'AbortError'));
    } catch {}
  });
  h.response = new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  return h;
}

/** events records a watcher's events in order. */
function record(w) {
  const seen = [];
  for (const t of ['run', 'ended', 'inactive', 'lost', 'stopped', 'connection']) {
    w.addEventListener(t, (e) => seen.push({ type: t, ...e.detail }));
  }
  return seen;
}

async function until(cond, ms = 2000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => realSetTimeout(r, 2));
  }
}

const fast = { token: 't0k3n', business: 'demo', idlePollMs: 10, pollMs: 10, backoffBaseMs: 2, backoffCapMs: 8, maxErrors: 4 };

/** a run as the server would send it now: stale_at ttlMs after server_time. */
function liveRun(over = {}, ttlMs = 60e3, serverNow = Date.now()) {
  return run({ server_time: new Date(serverNow).toISOString(), stale_at: new Date(serverNow + ttlMs).toISOString(), ...over });
}

const watchers = [];
function watcher(opts) {
  const w = new Watcher(opts);
  watchers.push(w);
  return w;
}
afterEach(() => {
  for (const w of watchers.splice(0)) w.stop();
});

describe('Watcher', () => {
  test('with no active run it says so once and keeps checking', async () => {
    const srv = fakeServer({ '/runs/active': () => json(404, { code: 'no_active_run' }) });
    const w = watcher({ ...fast, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => srv.requests.length >= 4);
    assert.deepEqual(seen.filter((e) => e.type !== 'connection'), [{ type: 'inactive', reason: 'no_active_run', run: null }]);
    assert.equal(srv.requests[0].headers.Authorization, 'Bearer t0k3n');
    assert.ok(srv.requests.every((r) => !r.url.includes('t0k3n')), 'the token never goes into a URL');
  });

  test('shows a run, follows the stream, resumes with Last-Event-ID, and ends the bar on "ended"', async () => {
    let active = liveRun();
    const streams = [];
    const srv = fakeServer({
      '/runs/active': () => json(200, active),
      '/runs/active/stream': (req) => {
        const h = sse(req);
        streams.push(h);
        return h.response;
      },
    });
    const w = watcher({ ...fast, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => streams.length === 1, 2000, 'the stream');
    streams[0].send('run', liveRun({ completed_calls: 31, pending_calls: 64 }), '41');
    await until(() => seen.filter((e) => e.type === 'run').length === 2, 2000, 'two run events');
    assert.equal(w.run.completed_calls, 31);
    streams[0].fail(); // the connection drops: reconnect with Last-Event-ID
    await until(() => streams.length === 2, 2000, 'the reconnection');
    assert.equal(srv.requests.at(-1).headers['Last-Event-ID'], '41');
    const final = run({ status: 'completed', active: false, stale_at: null, completed_calls: 95, failed_calls: 5, pending_calls: 0, end_reason: 'completed', ended_at: new Date().toISOString(), server_time: new Date().toISOString() });
    active = null;
    streams[1].send('ended', final, '42');
    await until(() => seen.some((e) => e.type === 'ended'), 2000, 'ended');
    assert.equal(w.run, null);
    assert.equal(streams[1].aborted || true, true);
    const types = seen.filter((e) => e.type !== 'connection').map((e) => e.type);
    assert.deepEqual(types, ['run', 'run', 'ended']);
  });

  test('its own TTL hides a bar whose run goes quiet, even while the stream stays open', async () => {
    const srv = fakeServer({
      '/runs/active': () => json(200, liveRun({}, 80)),
      '/runs/active/stream': (req) => sse(req).response, // sends nothing, never closes
    });
    const w = watcher({ ...fast, idlePollMs: 10_000, fetch: srv.fetch });
    const seen = record(w);
    const t0 = Date.now();
    w.start();
    await until(() => seen.some((e) => e.type === 'inactive'), 2000, 'the TTL');
    const waited = Date.now() - t0;
    assert.ok(waited >= 75 && waited < 400, `hidden after ${waited} ms, want ~80`);
    assert.equal(seen.find((e) => e.type === 'inactive').reason, 'stale');
    assert.equal(w.run, null);
  });

  test('a server clock years away from the local clock changes nothing', async () => {
    const serverNow = Date.parse('2001-01-01T00:00:00Z');
    const srv = fakeServer({
      '/runs/active': () => json(200, liveRun({}, 120, serverNow)),
      '/runs/active/stream': (req) => sse(req).response,
    });
    const w = watcher({ ...fast, idlePollMs: 10_000, fetch: srv.fetch });
    const seen = record(w);
    const t0 = Date.now();
    w.start();
    await until(() => seen.some((e) => e.type === 'run'), 2000, 'the bar');
    assert.ok(Math.abs(w.serverNow() - serverNow) < 100, 'serverNow follows the server clock');
    await until(() => seen.some((e) => e.type === 'inactive'), 2000, 'the TTL');
    const waited = Date.now() - t0;
    assert.ok(waited >= 110 && waited < 500, `hidden after ${waited} ms, want ~120`);
  });

  test('anything but running and active in a message removes the bar at once', async () => {
    for (const bad of [{ active: false }, { business_id: 'globex' }, { pending_calls: 1 }, { status: 'sleeping' }]) {
      let streamH;
      const srv = fakeServer({
        '/runs/active': () => json(404, { code: 'no_active_run' }),
        '/runs/active/stream': (req) => (streamH = sse(req)).response,
      });
      // Start from a shown run: the first check answers a live run.
      let first = true;
      const fetch = (url, init) => {
        if (first && url.endsWith('/runs/active')) {
          first = false;
          return Promise.resolve(json(200, liveRun()));
        }
        return srv.fetch(url, init);
      };
      const w = watcher({ ...fast, idlePollMs: 10_000, fetch });
      const seen = record(w);
      w.start();
      await until(() => streamH, 2000, 'the stream');
      streamH.send('run', liveRun(bad), '9');
      await until(() => seen.some((e) => e.type === 'inactive'), 2000, `inactive after ${JSON.stringify(bad)}`);
      assert.equal(w.run, null);
      assert.ok(streamH.aborted, 'the stream is closed');
      w.stop();
    }
  });

  test('a stream that keeps failing falls back to polling GET …/runs/active', async () => {
    const srv = fakeServer({
      '/runs/active': () => json(200, liveRun()),
      '/runs/active/stream': () => json(502, {}),
    });
    const w = watcher({ ...fast, maxErrors: 10, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => seen.some((e) => e.type === 'connection' && e.state === 'polling'), 2000, 'polling');
    const n = srv.requests.length;
    await until(() => srv.requests.length >= n + 3, 2000, 'polls');
    const after = srv.requests.slice(n).map((r) => r.path.endsWith('/stream'));
    assert.deepEqual(after.slice(0, 3), [false, false, false]);
    assert.ok(w.run, 'the bar still shows while polls confirm the run');
  });

  test('polling that finds no active run hides the bar at once and reports how the run ended', async () => {
    let phase = 'live';
    const srv = fakeServer({
      '/runs/active': () => (phase === 'live' ? json(200, liveRun()) : json(404, { code: 'no_active_run' })),
      '/runs/active/stream': () => json(502, {}),
      [`/runs/${RUN_ID}`]: () => json(200, run({ status: 'cancelled', active: false, stale_at: null, end_reason: 'cancel_forced', ended_at: new Date().toISOString() })),
    });
    const w = watcher({ ...fast, idlePollMs: 10_000, maxErrors: 10, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => w.state === 'polling', 2000, 'polling');
    phase = 'gone';
    await until(() => seen.some((e) => e.type === 'ended'), 2000, 'ended');
    const types = seen.filter((e) => e.type !== 'connection').map((e) => e.type);
    assert.deepEqual(types.slice(-2), ['inactive', 'ended']);
    assert.equal(seen.at(-1).run.end_reason, 'cancel_forced');
  });

  test('after maxErrors consecutive failures it reports lost and leaves nothing running', async () => {
    const srv = fakeServer({ '/runs/active': () => new TypeError('connection refused') });
    const w = watcher({ ...fast, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => seen.some((e) => e.type === 'lost'), 2000, 'lost');
    assert.equal(srv.requests.length, fast.maxErrors);
    assert.equal(w.state, 'lost');
    assert.equal(seen.find((e) => e.type === 'lost').errors, fast.maxErrors);
    const n = srv.requests.length;
    await new Promise((r) => realSetTimeout(r, 50));
    assert.equal(srv.requests.length, n, 'no request after lost');
  });

  test('a failure with a bar showing keeps it, says "reconnecting", and ends in lost', async () => {
    let up = true;
    const streams = [];
    const srv = fakeServer({
      '/runs/active': () => (up ? json(200, liveRun()) : new TypeError('refused')),
      '/runs/active/stream': (req) => {
        if (!up) return new TypeError('refused');
        const h = sse(req);
        streams.push(h);
        return h.response;
      },
    });
    const w = watcher({ ...fast, backoffBaseMs: 30, backoffCapMs: 60, maxErrors: 3, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => w.state === 'streaming', 2000, 'streaming');
    up = false;
    streams[0].fail();
    await until(() => w.state === 'reconnecting', 2000, 'reconnecting');
    assert.ok(w.run, 'the bar stays while reconnecting (its TTL still runs)');
    await until(() => seen.some((e) => e.type === 'lost'), 2000, 'lost');
    assert.equal(w.run, null);
    assert.deepEqual(seen.filter((e) => e.type !== 'connection').map((e) => e.type), ['run', 'lost']);
  });

  test('401, 403 and 404 not_found stop it: the token cannot see the business', async () => {
    for (const [status, code] of [[401, 'unauthorized'], [403, 'forbidden'], [404, 'not_found']]) {
      const srv = fakeServer({ '/runs/active': () => json(status, { code }) });
      const w = watcher({ ...fast, fetch: srv.fetch });
      const seen = record(w);
      w.start();
      await until(() => seen.some((e) => e.type === 'stopped'), 2000, 'stopped');
      assert.deepEqual(seen.find((e) => e.type === 'stopped'), { type: 'stopped', reason: 'unauthorized', status });
      assert.equal(srv.requests.length, 1);
    }
  });

  test('stops after maxWatchMs, saying so', async () => {
    const srv = fakeServer({ '/runs/active': () => json(200, liveRun()), '/runs/active/stream': (req) => sse(req).response });
    const w = watcher({ ...fast, maxWatchMs: 60, fetch: srv.fetch });
    const seen = record(w);
    w.start();
    await until(() => seen.some((e) => e.type === 'stopped'), 2000, 'stopped');
    assert.equal(seen.find((e) => e.type === 'stopped').reason, 'max_duration');
    assert.ok(srv.requests.at(-1).signal.aborted, 'the stream was aborted');
    assert.equal(w.run, null);
  });

  test('stop() and pagehide abort the request in flight and clear every timer', async () => {
    for (const how of ['stop', 'pagehide']) {
      live.clear();
      const lifecycle = new EventTarget();
      const srv = fakeServer({ '/runs/active': () => json(200, liveRun()), '/runs/active/stream': (req) => sse(req).response });
      const w = watcher({ ...fast, fetch: srv.fetch, lifecycle });
      const seen = record(w);
      w.start();
      await until(() => w.state === 'streaming' && srv.requests.length === 2, 2000, 'streaming');
      assert.ok(live.size >= 3, `maxWatch, TTL and stream-idle timers are set (${live.size})`);
      if (how === 'stop') w.stop();
      else lifecycle.dispatchEvent(new Event('pagehide'));
      assert.equal(live.size, 0, `${how}: timers left`);
      assert.ok(srv.requests.every((r) => r.signal.aborted || r.path.endsWith('/runs/active')), `${how}: a request left open`);
      assert.ok(srv.requests.at(-1).signal.aborted);
      assert.deepEqual(seen.at(-1), { type: 'stopped', reason: how });
      await new Promise((r) => realSetTimeout(r, 30));
      assert.equal(srv.requests.length, 2, `${how}: a request after stopping`);
      assert.equal(live.size, 0);
    }
  });

  test('a stream silent past streamIdleMs counts as failed', async () => {
    const streams = [];
    const srv = fakeServer({
      '/runs/active': () => json(200, liveRun()),
      '/runs/active/stream': (req) => {
        const h = sse(req);
        streams.push(h);
        return h.response;
      },
    });
    const w = watcher({ ...fast, streamIdleMs: 30, fetch: srv.fetch });
    w.start();
    await until(() => streams.length >= 2, 2000, 'a second stream');
    assert.ok(streams[0].aborted, 'the silent stream was aborted');
  });
});

describe('Watcher with waitForStart (the business stream)', () => {
  test('an idle watch is one open stream: the start, the end and the next start are pushed on it', async () => {
    const streams = [];
    const srv = fakeServer({
      '/runs/active/stream': (req) => {
        assert.ok(req.url.endsWith('/runs/active/stream?wait=true'), req.url);
        const h = sse(req);
        streams.push(h);
        return h.response;
      },
    });
    const w = watcher({ ...fast, fetch: srv.fetch, waitForStart: true });
    const seen = record(w);
    w.start();
    await until(() => streams.length === 1, 2000, 'the stream');
    streams[0].send('waiting', { server_time: new Date().toISOString(), run: null });
    await until(() => seen.some((e) => e.type === 'inactive'), 2000, 'inactive');
    streams[0].send('run', liveRun(), '5');
    await until(() => w.run !== null, 2000, 'the bar');
    const final = liveRun({ status: 'completed', active: false, stale_at: null, end_reason: 'completed', ended_at: new Date().toISOString() });
    streams[0].send('ended', final, '6');
    await until(() => seen.some((e) => e.type === 'ended'), 2000, 'ended');
    streams[0].send('waiting', { server_time: new Date().toISOString(), run: null });
    streams[0].send('run', liveRun({ run_id: '0190f0c2-7b1e-7cc3-9d7e-3f5a2b1c4d5f' }), '9');
    await until(() => w.run?.run_id.endsWith('5f'), 2000, 'the next run');
    assert.equal(srv.requests.length, 1, 'one request for the whole watch');
    assert.equal(streams[0].aborted, false);
    assert.deepEqual(
      seen.filter((e) => e.type !== 'connection').map((e) => e.type),
      ['inactive', 'run', 'ended', 'run'],
    );
  });

  test('a silent open run is named while waiting, and its end (by the reaper) is pushed', async () => {
    let h;
    const srv = fakeServer({ '/runs/active/stream': (req) => (h = sse(req)).response });
    const w = watcher({ ...fast, fetch: srv.fetch, waitForStart: true });
    const seen = record(w);
    w.start();
    await until(() => h, 2000, 'the stream');
    const silent = liveRun({ active: false });
    h.send('waiting', { server_time: new Date().toISOString(), run: silent });
    await until(() => seen.some((e) => e.type === 'inactive'), 2000, 'inactive');
    assert.equal(seen.find((e) => e.type === 'inactive').reason, 'not_active');
    h.send('ended', liveRun({ status: 'failed', active: false, stale_at: null, end_reason: 'stale', ended_at: new Date().toISOString() }), '12');
    await until(() => seen.some((e) => e.type === 'ended'), 2000, 'ended');
    assert.equal(srv.requests.length, 1);
  });

  test('a server without the option (404 no_active_run) is polled, as before', async () => {
    const srv = fakeServer({
      '/runs/active/stream': () => json(404, { code: 'no_active_run' }),
      '/runs/active': () => json(404, { code: 'no_active_run' }),
    });
    const w = watcher({ ...fast, fetch: srv.fetch, waitForStart: true });
    w.start();
    await until(() => srv.requests.length >= 4, 2000, 'polls');
    assert.equal(srv.requests.filter((r) => r.path.endsWith('/stream')).length, 1, 'the stream is asked once');
  });

  test('maxWatchMs bounds polling only; a healthy stream lasts', async () => {
    let h;
    let broken = false;
    const srv = fakeServer({ '/runs/active/stream': (req) => (broken ? json(502, {}) : (h = sse(req)).response) });
    const w = watcher({ ...fast, fetch: srv.fetch, waitForStart: true, maxWatchMs: 30 });
    const seen = record(w);
    w.start();
    await until(() => h, 2000, 'the stream');
    h.send('waiting', { server_time: new Date().toISOString(), run: null });
    await new Promise((r) => realSetTimeout(r, 80));
    assert.equal(seen.some((e) => e.type === 'stopped'), false, 'still watching past maxWatchMs');
    // The stream fails for good: the fallback's polling stops at once (overdue).
    broken = true;
    h.fail();
    await until(() => seen.some((e) => e.type === 'stopped'), 2000, 'the end of the watch');
    assert.equal(seen.find((e) => e.type === 'stopped').reason, 'max_duration');
    assert.equal(srv.requests.filter((r) => !r.path.endsWith('/stream')).length, 0, 'no poll after maxWatchMs');
  });
});
