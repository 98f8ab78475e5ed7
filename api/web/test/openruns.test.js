// Unit tests of the operator list's pure decisions: node --test api/web/test/
import test from 'node:test';
import assert from 'node:assert/strict';

import { openSnapshot } from '../static/assets/openfeed.js';
import { openRunState } from '../static/assets/openruns.js';

const run = {
  run_id: '019a0000-0000-7000-8000-000000000001',
  business_id: 'acme',
  last_heartbeat_at: '2026-11-30T02:00:00Z',
  stale_at: '2026-11-30T02:15:00Z',
};

test('openSnapshot reads an open event and refuses anything else', () => {
  const snap = openSnapshot(JSON.stringify({ runs: [run, { run_id: 7 }], next_cursor: null, server_time: '2026-11-30T02:00:05Z' }));
  assert.equal(snap.serverMs, Date.parse('2026-11-30T02:00:05Z'));
  assert.deepEqual(snap.runs, [run]); // a malformed run is dropped, not shown
  assert.equal(snap.nextCursor, null);
  assert.equal(openSnapshot('not json'), null);
  assert.equal(openSnapshot(JSON.stringify({ runs: [] })), null); // no server_time: no clock to count on
  assert.equal(openSnapshot(JSON.stringify({ server_time: '2026-11-30T02:00:05Z' })), null);
});

test('openRunState counts silence on the server clock and turns silent at stale_at', () => {
  assert.deepEqual(openRunState(run, Date.parse('2026-11-30T02:00:12Z')), { silentMs: 12000, live: true });
  assert.deepEqual(openRunState(run, Date.parse('2026-11-30T02:14:59.999Z')), { silentMs: 899999, live: true });
  assert.deepEqual(openRunState(run, Date.parse('2026-11-30T02:15:00Z')), { silentMs: 900000, live: false });
  // A server clock a little behind the heartbeat never shows a negative silence.
  assert.equal(openRunState(run, Date.parse('2026-11-30T01:59:59Z')).silentMs, 0);
  // An ended or malformed run (no stale_at) is never called live.
  assert.equal(openRunState({ ...run, stale_at: null }, Date.parse('2026-11-30T02:00:01Z')).live, false);
});

import { OpenRunsFeed } from '../static/assets/openfeed.js';

// fakeStream answers one fetch with an SSE body that sends chunks, then ends
// (or stays open until aborted when hold is true).
function fakeStream(chunks, { status = 200, hold = false } = {}) {
  return (url, init) => {
    const body = new ReadableStream({
      start(c) {
        for (const ch of chunks) c.enqueue(new TextEncoder().encode(ch));
        if (!hold) c.close();
        init.signal.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
      },
    });
    return Promise.resolve(new Response(status === 200 ? body : null, { status }));
  };
}

const event = (runs, serverTime = '2026-11-30T02:00:05Z') => `event: open\ndata: ${JSON.stringify({ runs, next_cursor: null, server_time: serverTime })}\n\n`;

test('OpenRunsFeed hands over each snapshot with the token in a header, and reconnects after a drop', async () => {
  const calls = [];
  const snaps = [];
  const statuses = [];
  let n = 0;
  const feed = new OpenRunsFeed({
    getToken: () => 'tok',
    random: () => 0,
    monotonic: () => 1000,
    fetch: (url, init) => {
      calls.push({ url, auth: init.headers.Authorization });
      n++;
      return n === 1 ? fakeStream([': keepalive\n\n', event([run])])(url, init) : fakeStream([event([])], { hold: true })(url, init);
    },
    onStatus: (s) => statuses.push(s),
    onSnapshot: (snap, mono) => snaps.push({ n: snap.runs.length, mono }),
  });
  feed.start();
  for (let i = 0; i < 200 && snaps.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
  feed.stop();
  assert.deepEqual(snaps, [{ n: 1, mono: 1000 }, { n: 0, mono: 1000 }]);
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[0], { url: '/v1/runs/open/stream?limit=100', auth: 'Bearer tok' });
  assert.deepEqual(statuses.slice(0, 3), ['connecting', 'live', 'reconnecting']);
});

test('OpenRunsFeed stops for good on 401 or 403, and stop() leaves no retry behind', async () => {
  let denied = null;
  let fetched = 0;
  const feed = new OpenRunsFeed({ getToken: () => 'x', fetch: (u, i) => (fetched++, fakeStream([], { status: 403 })(u, i)), onDenied: (s) => (denied = s), onSnapshot: () => {} });
  feed.start();
  for (let i = 0; i < 100 && denied === null; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(denied, 403);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fetched, 1);

  let tries = 0;
  const failing = new OpenRunsFeed({ getToken: () => 'x', random: () => 0, fetch: () => (tries++, Promise.reject(new TypeError('network'))), onSnapshot: () => {} });
  failing.start();
  for (let i = 0; i < 100 && tries < 1; i++) await new Promise((r) => setTimeout(r, 5));
  failing.stop();
  const after = tries;
  await new Promise((r) => setTimeout(r, 800)); // longer than the first backoffs
  assert.equal(tries, after);
});
