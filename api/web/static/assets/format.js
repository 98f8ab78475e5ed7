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

// Times: every time on the page is in one zone, the browser's, named on
// screen (zoneLabel), 24-hour, written the same way everywhere (the replay's
// input and its answer included): "2026-11-30 08:11:03", or "08:11:03" where
// the day goes without saying.

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** timeZoneName is the zone every time on the page is shown in: the browser's ("Europe/Paris"). */
export function timeZoneName() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
}

/** zoneOffset renders the page's zone's offset from UTC at ms: "UTC+05:30", "UTC-03:00", "UTC+00:00". */
export function zoneOffset(ms) {
  const m = -new Date(ms).getTimezoneOffset();
  return `UTC${m < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(m) / 60))}:${pad(Math.abs(m) % 60)}`;
}

/** zoneLabel names the page's zone for people: "Times in Europe/Paris (UTC+01:00), 24-hour"; "Times in UTC, 24-hour". */
export function zoneLabel(ms, name = timeZoneName()) {
  if (name === 'UTC' || name === 'Etc/UTC') return 'Times in UTC, 24-hour';
  return `Times in ${name} (${zoneOffset(ms)}), 24-hour`;
}

/** formatTime renders an RFC 3339 time as "HH:MM:SS" in the page's zone, 24-hour; "—" if it is not a time. */
export function formatTime(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** formatDateTime renders an RFC 3339 time as "2026-11-30 08:11:03" in the page's zone; "—" if it is not a time. */
export function formatDateTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? localInputValue(t) : '—';
}

/** localInputValue renders ms since the epoch as the replay input's value: "2026-11-30 08:11:03" in the page's zone. */
export function localInputValue(ms) {
  const d = new Date(ms);
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatTime(d.toISOString())}`;
}

/**
 * parseLocalInput reads "2026-11-30 08:11:03" (or "…T08:11", seconds
 * optional) as a time in the page's zone and returns ms since the epoch, or
 * NaN when it is not one (a month 13, a 25th hour, a day the month lacks).
 */
export function parseLocalInput(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(String(text ?? '').trim());
  if (!m) return NaN;
  const [y, mo, d, h, mi, s] = m.slice(1).map((v) => Number(v ?? 0));
  const at = new Date(y, mo - 1, d, h, mi, s);
  const same = at.getFullYear() === y && at.getMonth() === mo - 1 && at.getDate() === d && at.getHours() === h && at.getMinutes() === mi;
  return same ? at.getTime() : NaN;
}

/** localizeTimes rewrites the RFC 3339 times in a server's sentence ("stalled since 2026-11-30T02:41:03.000Z") in the page's zone. */
export function localizeTimes(text) {
  return String(text ?? '').replace(/\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g, (iso) => formatDateTime(iso));
}

const BUSINESS_ID_RULE = 'Use letters A–Z, digits, "_", "." and "-" (at most 64), starting with a letter or digit.';

/**
 * businessIdProblem says what keeps text from being a business id (the
 * server's rule: 1–64 of A–Z a–z 0–9 _ . -, starting with a letter or
 * digit), or "" when it is one.
 */
export function businessIdProblem(text) {
  const t = String(text ?? '');
  if (t === '') return 'Type a business id.';
  const chars = [...t];
  let why = '';
  if (/^\s/u.test(t)) why = 'it starts with a space';
  else if (/\s$/u.test(t)) why = 'it ends with a space';
  else {
    const bad = chars.find((c) => !/^[A-Za-z0-9_.-]$/.test(c));
    if (bad !== undefined) why = /\s/u.test(bad) ? 'it contains a space' : `"${bad}" is not allowed`;
    else if (!/^[A-Za-z0-9]/.test(t)) why = `it starts with "${chars[0]}"`;
    else if (chars.length > 64) why = `it is ${chars.length} characters long`;
  }
  return why ? `"${t}" cannot be a business id: ${why}. ${BUSINESS_ID_RULE}` : '';
}
