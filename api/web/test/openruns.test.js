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
