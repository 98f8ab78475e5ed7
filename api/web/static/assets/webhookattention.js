// webhookattention.js — the operator console's "Webhooks needing attention":
// every failing or disabled webhook endpoint (GET /v1/webhooks/failing), one
// line each in words. No stream says when an attempt is recorded (the
// open-runs stream follows the read models, not the sender), so the panel
// reads the list again every REFRESH_MS while the tab is visible, and at
// once when it becomes visible again; between reads its durations tick
// every second on the server's clock (server_time).

import { el, replace, setText } from './dom.js';
import { formatDateTime, formatDuration, formatTime } from './format.js';

/** REFRESH_MS is how often the panel reads the list while the tab is visible. */
export const REFRESH_MS = 15000;
const LIMIT = 50;

const STATUS_TEXT = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content',
  301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 413: 'Content Too Large', 422: 'Unprocessable Content',
  429: 'Too Many Requests', 500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** statusWords renders an HTTP status: "503 Service Unavailable", or "599" when it has no common name. */
export function statusWords(code) {
  return STATUS_TEXT[code] ? `${code} ${STATUS_TEXT[code]}` : String(code);
}

/** ageWords renders how long something has lasted: "12 s", "3 h 2 min", "5 days 2 h". */
export function ageWords(ms) {
  const day = 86400e3;
  if (!Number.isFinite(ms) || ms < day) return formatDuration(ms);
  const d = Math.floor(ms / day);
  const h = Math.floor((ms % day) / 3600e3);
  return `${d} day${d === 1 ? '' : 's'}${h ? ` ${h} h` : ''}`;
}

/** clockWords renders a time as "09:12:03" on now's day (in the page's zone), else "2026-11-25 09:12:03". */
export function clockWords(iso, nowMs) {
  const t = new Date(Date.parse(iso));
  const now = new Date(nowMs);
  const sameDay = t.getFullYear() === now.getFullYear() && t.getMonth() === now.getMonth() && t.getDate() === now.getDate();
  return sameDay ? formatTime(iso) : formatDateTime(iso);
}

// The server's disabled_reason, as the console says it.
const DISABLED_WORDS = {
  'the endpoint answered 410 Gone': 'disabled: answered 410 Gone',
  'every attempt failed for 5 days': 'disabled after 5 days of failures',
  'disabled by a user': 'disabled by a user',
};

/** lastAttemptWords renders an endpoint's newest attempt: "last attempt 503 Service Unavailable", or why no answer came. */
export function lastAttemptWords(last) {
  if (!last) return 'no attempt yet';
  if (last.status_code !== null && last.status_code !== undefined) return `last attempt ${statusWords(last.status_code)}`;
  return `last attempt got no answer (${last.error || 'no reason given'})`;
}

/**
 * attentionWords says what is wrong with one endpoint of the list at
 * serverNowMs: {state, detail}. state follows "business: origin" on the
 * line ("failing since 09:12:03 (3 h 2 min), last attempt 503 Service
 * Unavailable"; "disabled: answered 410 Gone"); detail is the rest (when it
 * was disabled, the last attempt's time, the deliveries it holds).
 */
export function attentionWords(item, serverNowMs) {
  const since = (iso) => `${clockWords(iso, serverNowMs)} (${ageWords(serverNowMs - Date.parse(iso))})`;
  const parts = [];
  let state;
  if (item.disabled) {
    state = DISABLED_WORDS[item.disabled_reason] ?? `disabled: ${item.disabled_reason || 'no reason given'}`;
    if (item.disabled_at) parts.push(`disabled at ${clockWords(item.disabled_at, serverNowMs)}, ${ageWords(serverNowMs - Date.parse(item.disabled_at))} ago`);
    if (item.failing_since) parts.push(`failing since ${since(item.failing_since)}`);
    if (item.last_attempt) parts.push(`${lastAttemptWords(item.last_attempt)} at ${clockWords(item.last_attempt.at, serverNowMs)}`);
  } else {
    state = `failing since ${since(item.failing_since)}, ${lastAttemptWords(item.last_attempt)}`;
    if (item.last_attempt) parts.push(`last attempt at ${clockWords(item.last_attempt.at, serverNowMs)}`);
  }
  const n = item.pending_deliveries ?? 0;
  const waiting = item.disabled ? 'held until the endpoint is enabled' : 'waiting';
  const oldest = item.oldest_pending_at ? ageWords(serverNowMs - Date.parse(item.oldest_pending_at)) : '';
  if (n === 0) parts.push('no delivery waiting');
  else if (n === 1) parts.push(`1 delivery ${waiting}, for ${oldest}`);
  else parts.push(`${n} deliveries ${waiting}, the oldest for ${oldest}`);
  return { state, detail: parts.join(' · ') };
}

/**
 * mountWebhookAttention returns {section, stop}: the card that lists the
 * webhook endpoints needing attention, read with api (onDenied(status) on
 * 401/403), and stop().
 */
export function mountWebhookAttention({ api, onDenied = () => {} }) {
  const list = el('ul', { class: 'attention-list' });
  const healthy = el('p', { class: 'muted', id: 'webhooks-healthy', hidden: true, text: 'All webhook endpoints are healthy.' });
  const more = el('p', { class: 'muted', hidden: true, text: `The ${LIMIT} longest in trouble are shown; more endpoints need attention.` });
  const status = el('span', { class: 'muted', id: 'webhooks-status', role: 'status' });
  const section = el(
    'section',
    { class: 'card', id: 'webhook-attention', 'aria-label': 'Webhooks needing attention' },
    el('div', { class: 'section-head' }, el('h2', { text: 'Webhooks needing attention' }), status),
    list,
    healthy,
    more,
  );

  let clock = null; // {serverMs, mono}: the server's time at a monotonic instant
  let items = [];
  let problem = '';
  let loading = false;
  let stopped = false;
  const serverNow = () => clock.serverMs + (performance.now() - clock.mono);

  async function load() {
    if (loading || stopped || document.hidden) return;
    loading = true;
    try {
      const res = await api.get(`/v1/webhooks/failing?limit=${LIMIT}`);
      const serverMs = Date.parse(res.body?.server_time);
      if (!Number.isFinite(serverMs) || !Array.isArray(res.body.endpoints)) throw new Error('the answer is not a list of endpoints');
      clock = { serverMs, mono: performance.now() };
      items = res.body.endpoints;
      more.hidden = res.body.more !== true;
      problem = '';
      render();
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        stop();
        onDenied(err.status);
        return;
      }
      problem = `Could not check the webhooks: ${err.message}.`;
      tick();
    } finally {
      loading = false;
    }
  }

  function render() {
    replace(
      list,
      items.map((item) => {
        const li = el('li', { class: item.disabled ? 'attention-disabled' : 'attention-failing', dataset: { endpoint: item.id, business: item.business_id } });
        li.append(
          el('p', { class: 'attention-line' }, el('strong', { text: item.business_id }), ': ', el('bdi', { class: 'mono', text: item.origin }), ' ', el('span', { class: 'attention-state' })),
          el('p', { class: 'attention-detail muted' }, item.description ? el('bdi', { text: item.description }) : null, item.description ? ' · ' : null, el('span', { class: 'attention-more' })),
        );
        return li;
      }),
    );
    healthy.hidden = items.length > 0;
    tick();
  }

  function tick() {
    if (clock !== null) {
      const now = serverNow();
      [...list.children].forEach((li, i) => {
        const words = attentionWords(items[i], now);
        setText(li.querySelector('.attention-state'), words.state);
        setText(li.querySelector('.attention-more'), words.detail);
      });
    }
    const checked = clock === null ? 'Checking…' : `Checked at ${formatTime(new Date(clock.serverMs).toISOString())}, again every ${REFRESH_MS / 1000} s`;
    setText(status, problem || checked);
  }

  const onVisible = () => {
    if (!document.hidden) load();
  };
  document.addEventListener('visibilitychange', onVisible);
  const refresher = setInterval(load, REFRESH_MS);
  const ticker = setInterval(tick, 1000);
  load();

  function stop() {
    stopped = true;
    clearInterval(refresher);
    clearInterval(ticker);
    document.removeEventListener('visibilitychange', onVisible);
  }
  return { section, stop };
}
