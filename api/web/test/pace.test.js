// Unit tests of what the page may say of a run's pace (watcher.js: runPace and
// its parts) and of why a run ended (reasons.js): `node --test api/web/test/`.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { SILENT_FLOOR_MS, goDurationMs, heartbeatInterval, runPace, silentAfterMs } from '../static/assets/watcher.js';
import { describeEnd, endReason, reaped } from '../static/assets/reasons.js';

const T0 = Date.parse('2026-11-30T02:00:00Z');
const iso = (ms) => new Date(ms).toISOString();

function run(over = {}) {
  return {
    run_id: '0190f0c2-7b1e-7cc3-9d7e-3f5a2b1c4d5e',
    status: 'running',
    active: true,
    cancel_requested: false,
    paused: false,
    stalled: false,
    total_calls: 100,
    completed_calls: 30,
    failed_calls: 0,
    pending_calls: 70,
    abandoned_calls: 0,
    started_at: iso(T0),
    last_heartbeat_at: iso(T0 + 30e3),
    last_progress_at: iso(T0 + 30e3),
    stale_after: '15m0s',
    stall_after: '10m0s',
    ...over,
  };
}

// beats: a heartbeat every `every` ms, one call each, from T0 to T0 + n·every.
function beats(n, every) {
  return Array.from({ length: n + 1 }, (_, i) => ({ t: T0 + i * every, done: i }));
}

describe('goDurationMs', () => {
  for (const [s, ms] of [['15m0s', 900e3], ['1h0m0s', 3600e3], ['1.5s', 1500], ['250ms', 250], ['3s', 3000], ['0s', 0]]) {
    test(`${s} is ${ms} ms`, () => assert.equal(goDurationMs(s), ms));
  }
  test('anything else is NaN', () => {
    for (const s of ['', '15', 'm', '3 s', null]) assert.ok(Number.isNaN(goDurationMs(s)), String(s));
  });
});

describe('heartbeatInterval and silentAfterMs', () => {
  test('the median gap of the heartbeats seen', () => {
    assert.equal(heartbeatInterval(beats(5, 1000)), 1000);
    assert.equal(heartbeatInterval([{ t: T0 }, { t: T0 + 1000 }, { t: T0 + 2000 }, { t: T0 + 60e3 }]), 1000);
    assert.equal(heartbeatInterval([{ t: T0 }]), null);
  });
  test('three intervals, at least the floor; a fifth of the TTL before two heartbeats', () => {
    assert.equal(silentAfterMs(run(), beats(5, 1000)), 3000);
    assert.equal(silentAfterMs(run(), beats(5, 100)), SILENT_FLOOR_MS);
    assert.equal(silentAfterMs(run(), []), 180e3);
  });
});

describe('runPace', () => {
  test('a worker that beat every second and has been silent 8 s has no rate and no ETA', () => {
    const r = run({ completed_calls: 30, pending_calls: 70, last_heartbeat_at: iso(T0 + 30e3) });
    const p = runPace(r, beats(30, 1000), T0 + 38e3);
    assert.equal(p.state, 'silent');
    assert.equal(p.silentMs, 8000);
    assert.equal(p.ratePerMin, null);
    assert.equal(p.etaMs, null);
  });
  test('while it beats: the rate of recent heartbeats only, and the ETA from it', () => {
    // Slow for the first 20 minutes, then 60 calls/min: the rate is the recent one.
    const samples = [{ t: T0, done: 0 }, { t: T0 + 20 * 60e3, done: 10 }, ...Array.from({ length: 10 }, (_, i) => ({ t: T0 + 20 * 60e3 + (i + 1) * 1000, done: 11 + i }))];
    const last = samples.at(-1);
    const r = run({ completed_calls: last.done, pending_calls: 100 - last.done, last_heartbeat_at: iso(last.t) });
    const p = runPace(r, samples, last.t + 500);
    assert.equal(p.state, 'working');
    assert.ok(Math.abs(p.ratePerMin - 60) < 1e-9, `rate ${p.ratePerMin}`);
    assert.ok(Math.abs(p.etaMs - (80 / 60) * 60e3) < 1e-6, `eta ${p.etaMs}`);
  });
  test('stopping, paused and stalled have no rate; silent comes first', () => {
    const now = T0 + 30e3 + 500;
    assert.equal(runPace(run({ cancel_requested: true }), beats(30, 1000), now).state, 'stopping');
    assert.equal(runPace(run({ paused: true }), beats(30, 1000), now).state, 'paused');
    assert.equal(runPace(run({ paused: true }), beats(30, 1000), now).etaMs, null);
    assert.equal(runPace(run({ paused: true }), beats(30, 1000), T0 + 60e3).state, 'silent');
  });
  test('stalled: the last progress, not stalled_since', () => {
    const r = run({ stalled: true, last_progress_at: iso(T0 + 10e3), stalled_since: iso(T0 + 10e3 + 600e3) });
    const p = runPace(r, beats(30, 1000), T0 + 30e3 + 500);
    assert.equal(p.state, 'stalled');
    assert.equal(p.lastProgressMs, T0 + 10e3);
    // A server without last_progress_at: stalled_since − stall_after.
    const old = runPace({ ...r, last_progress_at: undefined }, beats(30, 1000), T0 + 30e3 + 500);
    assert.equal(old.lastProgressMs, T0 + 10e3);
  });
  test('one heartbeat measures nothing (the start is not a sample)', () => {
    const r = run({ completed_calls: 18, pending_calls: 82, last_heartbeat_at: iso(T0 + 1) });
    const p = runPace(r, [], T0 + 500); // the page passes heartbeats only, not the start
    assert.equal(p.state, 'measuring');
    assert.equal(p.ratePerMin, null);
  });
});

describe('reasons', () => {
  const ended = (over) => run({ status: 'completed', active: false, ended_at: iso(T0 + 60e3), last_heartbeat_at: iso(T0 + 50e3), ...over });
  test('a run completed at 34/100 does not "finish its list"', () => {
    const r = ended({ end_reason: 'completed', completed_calls: 34, pending_calls: 66 });
    assert.equal(endReason(r), 'ended completed by worker: 34/100 done, 0 failed, 66 pending');
    assert.match(describeEnd(r), /66 of 100 calls not made/);
  });
  test('a cancel the reaper ended: silent, with its abandoned calls', () => {
    const r = ended({ status: 'cancelled', end_reason: 'cancelled', completed_calls: 13, pending_calls: 87, abandoned_calls: 87, stale_after: '10s' });
    assert.equal(reaped(r), true);
    assert.equal(endReason(r), 'ended cancelled (stopped after the cancel request): silent for 10 s (TTL 10s), 87 calls abandoned');
  });
  test('a cancel the worker obeyed', () => {
    const r = ended({ status: 'cancelled', end_reason: 'cancelled', ended_at: iso(T0 + 51e3) });
    assert.equal(reaped(r), false);
    assert.match(endReason(r), /^ended cancelled by worker after the cancel request: 30\/100 done/);
  });
  test('the last error is shown', () => {
    const r = ended({ status: 'failed', end_reason: 'worker_failed', last_error: 'carrier down' });
    assert.match(endReason(r), /\(error: "carrier down"\)$/);
  });
  test('stale: "Ended: failed, its worker went silent at …"', () => {
    const r = ended({ status: 'failed', end_reason: 'stale', abandoned_calls: 70, stale_after: '10s' });
    assert.match(describeEnd(r), /^Ended: failed, its worker went silent at \d\d:\d\d:\d\d/);
    assert.match(endReason(r), /^ended failed \(stale\): silent for 10 s \(TTL 10s\), 70 calls abandoned$/);
  });
});
