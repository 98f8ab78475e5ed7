// reasons.js — why a run ended, in the words of the audit (`runledger audit`
// and the operator's timeline), from the run's own fields: end_reason,
// last_error, abandoned_calls, and the silence before a reaper's end
// (ended_at − last_heartbeat_at, against the run's own stale_after). Pure: no
// DOM, no clock.

import { formatDuration, formatTime } from './format.js';
import { goDurationMs } from './watcher.js';

/** progress is the audit's "34/100 done, 0 failed, 66 pending". */
export function progress(run) {
  return `${run.completed_calls}/${run.total_calls} done, ${run.failed_calls} failed, ${run.pending_calls} pending`;
}

/** silence is how long the run had been silent when it ended, in ms (NaN for a run that has not ended). */
export function silence(run) {
  return Date.parse(run.ended_at) - Date.parse(run.last_heartbeat_at);
}

/**
 * reaped reports whether the run was ended for its silence (by the reaper, or
 * a forced cancel) rather than by its worker: its end_reason says so, or it
 * ended a whole TTL after its last heartbeat.
 */
export function reaped(run) {
  if (run.end_reason === 'stale' || run.end_reason === 'cancel_forced') return true;
  const ttl = goDurationMs(run.stale_after);
  return run.end_reason === 'cancelled' && (run.abandoned_calls > 0 || (Number.isFinite(ttl) && silence(run) >= ttl));
}

function errorText(run) {
  return run.last_error ? ` (error: "${run.last_error}")` : '';
}

function silentFor(run) {
  return `silent for ${formatDuration(silence(run))} (TTL ${run.stale_after})`;
}

/**
 * endReason is the history's "Why it ended" for a run that ended, "" for one
 * that has not: what the audit says of its last event.
 */
export function endReason(run) {
  if (!run.end_reason) return '';
  const abandoned = `${run.abandoned_calls} call${run.abandoned_calls === 1 ? '' : 's'} abandoned`;
  switch (run.end_reason) {
    case 'completed':
      return `ended completed by worker: ${progress(run)}${errorText(run)}`;
    case 'worker_failed':
      return `ended failed by worker: ${progress(run)}${errorText(run)}`;
    case 'cancelled':
      if (reaped(run)) return `ended cancelled (stopped after the cancel request): ${silentFor(run)}, ${abandoned}${errorText(run)}`;
      return `ended cancelled by worker after the cancel request: ${progress(run)}${errorText(run)}`;
    case 'cancel_forced':
      return `cancelled: the worker was silent; forced cancel, run ${silentFor(run)}, ${abandoned}${errorText(run)}`;
    case 'stale':
      return `ended failed (stale): ${silentFor(run)}, ${abandoned}${errorText(run)}`;
    default:
      return `ended ${run.status} (${run.end_reason})${errorText(run)}`;
  }
}

/** describeEnd is one sentence, for the note that replaces the bar, about how a run ended. */
export function describeEnd(run) {
  const what = `${run.completed_calls} completed, ${run.failed_calls} failed of ${run.total_calls}`;
  const lastWord = formatTime(run.last_heartbeat_at);
  const abandoned = `${run.abandoned_calls} abandoned`;
  switch (run.end_reason) {
    case 'completed':
      return run.pending_calls > 0
        ? `Run completed by its worker with ${run.pending_calls} of ${run.total_calls} calls not made: ${what}.`
        : `Run completed: ${what}.`;
    case 'worker_failed':
      return `Run failed: the worker reported a failure${run.last_error ? ` (${run.last_error})` : ''}; ${what}.`;
    case 'cancelled':
      return reaped(run)
        ? `Ended: cancelled, its worker went silent at ${lastWord} after the cancel request; ${what}, ${abandoned}.`
        : `Run cancelled: the worker stopped; ${what}.`;
    case 'cancel_forced':
      return `Cancelled: the worker was silent since ${lastWord}; ${what}, ${abandoned}.`;
    case 'stale':
      return `Ended: failed, its worker went silent at ${lastWord} (no sign of life for its TTL of ${run.stale_after}); ${what}, ${abandoned}.`;
    default:
      return `Run ${run.status}: ${what}.`;
  }
}
