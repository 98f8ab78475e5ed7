// Session consistency of the plain Watcher (issue 25 item 3): it remembers
// the highest log position it has been shown and sends the larger of that
// and the caller's minPosition with its reads; eventualReads: true opts out.
// `node --test api/web/test/`.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { Watcher } from '../static/assets/watcher.js';

const RUN_ID = '0190f0c2-7b1e-7cc3-9d7e-3f5a2b1c4d5e';

function liveRun(over = {}) {
  const now = Date.now();
  return {
    run_id: RUN_ID,
    business_id: 'demo',
    status: 'running',
    active: true,
    cancel_requested: false,
    total_calls: 10,
    completed_calls: 3,
    failed_calls: 0,
    pending_calls: 7,
    worker_id: 'w',
    started_at: new Date(now - 60e3).toISOString(),
    last_heartbeat_at: new Date(now - 1e3).toISOString(),
    stale_at: new Date(now + 60e3).toISOString(),
    server_time: new Date(now).toISOString(),
    ...over,
  };
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/**
 * server answers GET …/runs/active with answers[i] (the last one repeated)
 * and refuses streams, so the watcher polls; it records each request's
 * Runledger-Min-Position header (null when absent).
 */
function server(answers) {
  const sent = [];
  const fetch = async (url, init) => {
    const path = new URL(url, 'http://x').pathname;
    if (path.endsWith('/stream')) return json(503, { code: 'unavailable' });
    sent.push(init.headers['Runledger-Min-Position'] ?? null);
    const a = answers[Math.min(sent.length - 1, answers.length - 1)];
    return json(a.status, a.body);
  };
  return { fetch, sent };
}

const watchers = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.stop();
});

function start(opts) {
  const w = new Watcher({ token: 't', business: 'demo', idlePollMs: 5, pollMs: 5, backoffBaseMs: 1, backoffCapMs: 2, streamFailuresBeforePolling: 0, maxErrors: 1000, ...opts });
  watchers.push(w);
  w.start();
  return w;
}

async function until(cond, what) {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('sends the highest position it was shown with its next reads, never going back', async () => {
  const srv = server([
    { status: 200, body: liveRun({ position: 40 }) },
    { status: 200, body: liveRun({ position: 25 }) }, // a replica behind (cannot happen with the header; the watcher must not go back anyway)
    { status: 404, body: { code: 'no_active_run', position: 57 } },
    { status: 404, body: { code: 'no_active_run' } },
  ]);
  start({ fetch: srv.fetch });
  await until(() => srv.sent.length >= 5, 'five reads');
  assert.deepEqual(srv.sent.slice(0, 5), [null, '40', '40', '57', '57']);
});

test("sends the caller's minPosition when it is higher", async () => {
  let mine = 90;
  const srv = server([{ status: 200, body: liveRun({ position: 40 }) }]);
  start({ fetch: srv.fetch, minPosition: () => mine });
  await until(() => srv.sent.length >= 2, 'two reads');
  assert.deepEqual(srv.sent.slice(0, 2), ['90', '90']);
  mine = 10;
  const n = srv.sent.length;
  await until(() => srv.sent.length >= n + 1, 'one more read');
  assert.equal(srv.sent.at(-1), '40');
});

test('eventualReads: true sends only the caller minPosition', async () => {
  const srv = server([{ status: 200, body: liveRun({ position: 40 }) }]);
  start({ fetch: srv.fetch, eventualReads: true });
  await until(() => srv.sent.length >= 3, 'three reads');
  assert.deepEqual(srv.sent.slice(0, 3), [null, null, null]);
  const srv2 = server([{ status: 200, body: liveRun({ position: 40 }) }]);
  start({ fetch: srv2.fetch, eventualReads: true, minPosition: 7 });
  await until(() => srv2.sent.length >= 2, 'two reads');
  assert.deepEqual(srv2.sent.slice(0, 2), ['7', '7']);
});
