// format.js — pure formatting for the page (no DOM, no clock:
// every "now" is passed in, measured on the server's clock).

/** formatDuration renders ms as "12 s", "3 min 5 s", "2 h 3 min" (rounded down to the second). */
export function formatDuration(ms) {
  if (!Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

/** ago renders how long before now (both in ms) a time was: "12 s ago". */
export function ago(thenMs, nowMs) {
  return `${formatDuration(nowMs - thenMs)} ago`;
}

/** parseDuration reads "90s", "5m", "1h", "1m30s" or a number of seconds; NaN if it cannot. */
export function parseDuration(text) {
  const t = String(text ?? '').trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  const unit = { ms: 1, s: 1000, m: 60e3, h: 3600e3 };
  let total = 0;
  let matched = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * unit[m[2]];
    matched = re.lastIndex;
  }
  return matched > 0 && matched === t.length ? total : NaN;
}

/**
 * shortIds names each run id of a set by the end of its 32 hex digits (the
 * random tail of a UUIDv7, whose first digits are a time that runs started
 * close together share): 8 digits, lengthened until no two ids of the set
 * read the same. It is the rule the server's audit texts follow, so a short
 * form on the page matches the one in `runledger audit`.
 */
export function shortIds(ids) {
  const hex = new Map([...new Set(ids.map((id) => String(id ?? '')))].map((id) => [id, id.replaceAll('-', '')]));
  for (let n = 8; ; n++) {
    const forms = new Map([...hex].map(([id, h]) => [id, h.slice(-Math.min(n, h.length))]));
    if (new Set(forms.values()).size === forms.size || n >= 32) return forms;
  }
}

/** shortId is the short form of id among the ids shown with it (alone by default). */
export function shortId(id, among = []) {
  return shortIds([...among, id]).get(String(id ?? ''));
}

/** formatRate renders calls per minute: "12 calls/min", "0.4 calls/min", or "—". */
export function formatRate(perMin) {
  if (perMin === null || !Number.isFinite(perMin)) return '—';
  const v = perMin >= 10 ? Math.round(perMin) : Math.round(perMin * 10) / 10;
  return `${v} call${v === 1 ? '' : 's'}/min`;
}

/** formatEta renders the estimate of the time left: "about 3 min", "less than a minute", or "—". */
export function formatEta(ms) {
  if (ms === null || !Number.isFinite(ms)) return '—';
  if (ms === 0) return 'done';
  if (ms < 60e3) return 'less than a minute';
  return `about ${formatDuration(Math.round(ms / 60e3) * 60e3)}`;
}

const STATUS_TEXT = { running: 'Running', completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled' };

/** statusText is a run's status for people. */
export function statusText(run) {
  if (run.status === 'running' && run.active === false) return 'Not active (silent)';
  if (run.status === 'running' && run.cancel_requested) return 'Stopping';
  if (run.status === 'running' && run.paused === true) return 'Paused';
  if (run.status === 'running' && run.stalled === true) return 'Stalled';
  return STATUS_TEXT[run.status] ?? run.status;
}

/** counts renders a run's progress as "30 completed · 5 failed · 65 pending of 100". */
export function counts(run) {
  return `${run.completed_calls} completed · ${run.failed_calls} failed · ${run.pending_calls} pending of ${run.total_calls}`;
}

const TIME = { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' };
const DATE_TIME = { month: 'short', day: 'numeric', ...TIME };

/** formatTime renders an RFC 3339 time as the local "HH:MM:SS". */
export function formatTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Intl.DateTimeFormat(undefined, TIME).format(t) : '—';
}

/** formatDateTime renders an RFC 3339 time as the local "Nov 28, 09:05:01". */
export function formatDateTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Intl.DateTimeFormat(undefined, DATE_TIME).format(t) : '—';
}

/** localInputValue renders ms since the epoch as a datetime-local input's value (local time, seconds). */
export function localInputValue(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getFullYear(), 4)}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
