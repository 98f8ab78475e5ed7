// timeline.js — the words of the operator's timeline and replay (pure: no
// DOM). The server's audit explains each event (GET …/timeline, the same
// words as `runledger audit`); the page folds runs of heartbeats into one
// row, names every actor one way ("worker dialer-3", "user alice", the
// worker of a run for a subject-less worker token), and says what the page
// itself would have shown at a replayed instant.

import { formatDateTime, formatDuration, localizeTimes, parseDuration, shortId } from './format.js';

/**
 * actorName names who caused an event: "role:subject" becomes "role
 * subject"; a bare "worker" (a token without a subject) is the run's worker,
 * named by the worker_id its start recorded, when known.
 */
export function actorName(actor, workerId = '') {
  const a = String(actor ?? '');
  if (a === '' || a === '-') return 'unknown';
  if (a === 'worker' && workerId) return `worker ${workerId}`;
  const colon = a.indexOf(':');
  return colon < 0 ? a : `${a.slice(0, colon)} ${a.slice(colon + 1)}`;
}

/** namesInText writes the actors named inside a sentence ("paused by user:alice") the same way. */
export function namesInText(text) {
  return String(text ?? '').replace(/\b(worker|user|operator|reaper):([^\s,;()"]+)/g, '$1 $2');
}

// plainHeartbeat: a heartbeat that says only its progress (no cancel told,
// no stall, no silence before it), which a fold may hide.
const plainHeartbeat = (ev) => ev.type === 'Heartbeat' && !/[;(]/.test(ev.summary ?? '');

/**
 * foldTimeline groups the consecutive plain heartbeats of one run into one
 * item: it returns [{kind: "event", ev} | {kind: "heartbeats", events}], in
 * order. A lone heartbeat stays an event; a notable one (the worker told to
 * stop, a stall, after a silence) always stands alone.
 */
export function foldTimeline(events) {
  const out = [];
  for (const ev of events) {
    const prev = out.at(-1);
    if (plainHeartbeat(ev) && prev && prev.kind === 'heartbeats' && prev.events[0].run_id === ev.run_id) {
      prev.events.push(ev);
      continue;
    }
    if (plainHeartbeat(ev) && prev && prev.kind === 'event' && plainHeartbeat(prev.ev) && prev.ev.run_id === ev.run_id) {
      out[out.length - 1] = { kind: 'heartbeats', events: [prev.ev, ev] };
      continue;
    }
    out.push({ kind: 'event', ev });
  }
  return out;
}

/** totalOf is a run's total calls from a heartbeat's summary ("12/40 done, …"), or NaN. */
function totalOf(ev) {
  const m = /\/(\d+) done/.exec(ev.summary ?? '');
  return m ? Number(m[1]) : NaN;
}

/**
 * foldSummary says what a fold of heartbeats carried: "6 heartbeats over
 * 25 s: 1/23 → 6/23 done, 0 failed" (failed "1 → 3 failed" when it moved).
 */
export function foldSummary(events) {
  const first = events[0];
  const last = events.at(-1);
  const span = Date.parse(last.occurred_at) - Date.parse(first.occurred_at);
  const total = totalOf(last);
  const c = (ev) => ev.data?.completed_calls;
  const f = (ev) => ev.data?.failed_calls;
  const of = Number.isFinite(total) ? `/${total}` : '';
  const failed = f(first) === f(last) ? `${f(last)} failed` : `${f(first)} → ${f(last)} failed`;
  return `${events.length} heartbeats over ${silence(span)}: ${c(first)}${of} → ${c(last)}${of} done, ${failed}`;
}

/**
 * silence renders a short span with tenths of a second under 10 s ("3.2 s",
 * so that a silence reads past a TTL of "3 s"), else as formatDuration.
 */
export function silence(ms) {
  if (!Number.isFinite(ms)) return '—';
  return ms < 10e3 ? `${(Math.floor(Math.max(0, ms) / 100) / 10).toFixed(1)} s` : formatDuration(ms);
}

const ENDED = {
  completed: 'completed',
  worker_failed: 'failed: its worker reported an error',
  cancelled: 'cancelled',
  cancel_forced: 'cancelled while its worker was silent',
  stale: 'failed: its worker went silent past its TTL',
};

/**
 * replayWords says, for people, what the page would have shown at a replayed
 * instant (r is GET …/replay's answer; zone names the page's zone): {answer,
 * detail}. The answer never quotes the API: the bar, or no bar and why.
 */
export function replayWords(r, zone) {
  const at = Date.parse(r.at);
  const when = `At ${formatDateTime(r.at)} (${zone})`;
  const run = r.run;
  const ttl = formatDuration(parseDuration(r.stale_after));
  if (!run) return { answer: `${when} the page would have shown no bar: no run had started by then.`, detail: '' };
  const name = shortId(run.run_id);
  const pending = run.total_calls - run.completed_calls - run.failed_calls;
  const detail = `Run ${name} of worker ${run.worker_id}: ${run.completed_calls}/${run.total_calls} done, ${run.failed_calls} failed, ${pending} pending; last sign of life ${formatDateTime(run.last_heartbeat_at)}; TTL ${ttl}; ${r.events_folded} events replayed.`;
  const silent = silence(at - Date.parse(run.last_heartbeat_at));
  if (run.status && run.status !== 'running') {
    let how = ENDED[run.end_reason] ?? run.status;
    if (run.end_reason === 'worker_failed' && run.last_error) how += ` ("${run.last_error}")`;
    return { answer: `${when} the page would have shown no bar: run ${name} had ended at ${formatDateTime(run.ended_at)}, ${how}.`, detail };
  }
  if (!r.active) {
    return { answer: `${when} the page would have shown no bar: run ${name} had been silent for ${silent}, past its TTL of ${ttl}.`, detail };
  }
  let answer = `${when} the page would have shown the bar: the run was live, last sign of life ${silent} before`;
  if (run.paused) answer += `, paused by ${actorName(run.paused_by || 'unknown')}`;
  const stall = /stalled since (\S+)/.exec(r.reason ?? '');
  if (stall) answer += `, stalled: no progress since ${localizeTimes(stall[1])}`;
  return { answer: `${answer}.`, detail };
}

/** whatHappened is an event's explanation with its times and actors written the page's way. */
export function whatHappened(ev) {
  return namesInText(localizeTimes(ev.summary));
}
