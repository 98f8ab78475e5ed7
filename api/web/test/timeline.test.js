// The operator timeline's words: folds, actors, the replay said for people.
process.env.TZ = 'UTC';

const { test } = await import('node:test');
const assert = (await import('node:assert/strict')).default;
const { actorName, foldSummary, foldTimeline, namesInText, replayWords, silence, whatHappened } = await import('../static/assets/timeline.js');

const R1 = '019a0000-0000-7000-8000-0000000000a1';
const R2 = '019a0000-0000-7000-8000-0000000000b2';
let pos = 0;
const ev = (type, run, t, summary, data = {}) => ({ position: ++pos, type, run_id: run, occurred_at: `2026-11-30T02:00:${String(t).padStart(2, '0')}Z`, actor: 'worker', summary, data });
const hb = (run, t, c, f, total = 23, note = '') => ev('Heartbeat', run, t, `${c}/${total} done, ${f} failed, ${total - c - f} pending${note}`, { completed_calls: c, failed_calls: f });

test('consecutive plain heartbeats of one run fold into one item; anything else breaks the fold', () => {
  const events = [
    ev('RunStarted', R1, 0, 'started by worker dialer-3: 23 calls', { worker_id: 'dialer-3' }),
    hb(R1, 1, 1, 0),
    hb(R1, 2, 2, 0),
    hb(R1, 3, 3, 1),
    hb(R2, 4, 1, 0), // another run's heartbeat between
    hb(R1, 5, 4, 1),
    hb(R1, 6, 4, 1, 23, '; worker told to stop'), // notable: stands alone
    hb(R1, 7, 5, 1),
    ev('RunCompleted', R1, 8, 'ended completed by worker: 5/23 done'),
  ];
  const kinds = foldTimeline(events).map((i) => (i.kind === 'event' ? i.ev.type : `fold×${i.events.length}`));
  assert.deepEqual(kinds, ['RunStarted', 'fold×3', 'Heartbeat', 'Heartbeat', 'Heartbeat', 'Heartbeat', 'RunCompleted']);
  assert.deepEqual(foldTimeline([]), []);
});

test('a fold says how many, over how long, and the progress from → to', () => {
  assert.equal(foldSummary([hb(R1, 1, 1, 0), hb(R1, 2, 2, 0), hb(R1, 26, 6, 0)]), '3 heartbeats over 25 s: 1/23 → 6/23 done, 0 failed');
  assert.equal(foldSummary([hb(R1, 1, 7, 1), hb(R1, 9, 10, 3)]), '2 heartbeats over 8.0 s: 7/23 → 10/23 done, 1 → 3 failed');
});

test('actors are named one way', () => {
  assert.equal(actorName('worker:dialer-3', 'dialer-3'), 'worker dialer-3');
  assert.equal(actorName('worker', 'dialer-3'), 'worker dialer-3'); // a token without a subject: the run's worker
  assert.equal(actorName('worker', ''), 'worker');
  assert.equal(actorName('user:alice'), 'user alice');
  assert.equal(actorName('reaper:host-1'), 'reaper host-1');
  assert.equal(actorName('-'), 'unknown');
  assert.equal(namesInText('paused by user:alice (reason: "lunch"); detected by reaper:host-1'), 'paused by user alice (reason: "lunch"); detected by reaper host-1');
  assert.equal(whatHappened({ summary: 'stalled since 2026-11-30T02:00:01.000Z; cancel requested by operator:bob' }), 'stalled since 2026-11-30 02:00:01; cancel requested by operator bob');
});

const run = (over = {}) => ({
  run_id: R1, worker_id: 'dialer-3', status: 'running', total_calls: 23, completed_calls: 5, failed_calls: 1,
  last_heartbeat_at: '2026-11-30T02:00:00Z', ...over,
});

test('the replay says what the page would have shown, in words, never the API', () => {
  const at = '2026-11-30T02:00:12Z';
  const live = replayWords({ at, stale_after: '15m0s', active: true, run: run(), events_folded: 4, reason: 'x' }, 'UTC');
  assert.equal(live.answer, 'At 2026-11-30 02:00:12 (UTC) the page would have shown the bar: the run was live, last sign of life 12 s before.');
  assert.equal(live.detail, 'Run 000000a1 of worker dialer-3: 5/23 done, 1 failed, 17 pending; last sign of life 2026-11-30 02:00:00; TTL 15 min; 4 events replayed.');
  const paused = replayWords({ at, stale_after: '15m0s', active: true, run: run({ paused: true, paused_by: 'user:alice' }), reason: 'run … stalled since 2026-11-30T01:50:00.000Z (no progress for 10m12s)' }, 'UTC');
  assert.equal(paused.answer, 'At 2026-11-30 02:00:12 (UTC) the page would have shown the bar: the run was live, last sign of life 12 s before, paused by user alice, stalled: no progress since 2026-11-30 01:50:00.');
  const silent = replayWords({ at: '2026-11-30T02:00:03.2Z', stale_after: '3s', active: false, run: run() }, 'UTC');
  assert.equal(silent.answer, 'At 2026-11-30 02:00:03 (UTC) the page would have shown no bar: run 000000a1 had been silent for 3.2 s, past its TTL of 3 s.');
  const ended = replayWords({ at, stale_after: '15m0s', active: false, run: run({ status: 'failed', end_reason: 'worker_failed', last_error: 'carrier down', ended_at: '2026-11-30T02:00:05Z' }) }, 'UTC');
  assert.equal(ended.answer, 'At 2026-11-30 02:00:12 (UTC) the page would have shown no bar: run 000000a1 had ended at 2026-11-30 02:00:05, failed: its worker reported an error ("carrier down").');
  const none = replayWords({ at, stale_after: '15m0s', active: false, run: null }, 'Europe/Paris');
  assert.equal(none.answer, 'At 2026-11-30 02:00:12 (Europe/Paris) the page would have shown no bar: no run had started by then.');
  for (const w of [live, paused, silent, ended, none]) assert.doesNotMatch(w.answer + w.detail, /GET|200|404|no_active_run/);
});

test('silence reads in tenths under a minute', () => {
  assert.equal(silence(3200), '3.2 s');
  assert.equal(silence(2999), '2.9 s');
  assert.equal(silence(12500), '12 s');
  assert.equal(silence(61000), '1 min 1 s');
});
