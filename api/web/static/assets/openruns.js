// openruns.js — the operator's list of open runs, longest silence first,
// pushed by the server (openfeed.js): a run started or ended anywhere
// appears or leaves as soon as the read model has it, and each row's silence
// and state are counted every second on the server's clock (the offset from
// the last event's server_time), so the list never goes stale.

import { cell, el, setText } from './dom.js';
import { OpenRunsFeed } from './openfeed.js';
import { formatDuration, formatTime, shortIds } from './format.js';

const LIMIT = 100;

/**
 * openRunState is what the list says of run at serverNowMs: its silence in
 * ms and whether it is live (its stale_at is still ahead) or silent past its
 * TTL.
 */
export function openRunState(run, serverNowMs) {
  const silentMs = Math.max(0, serverNowMs - Date.parse(run.last_heartbeat_at));
  const staleAt = Date.parse(run.stale_at);
  const live = Number.isFinite(staleAt) && serverNowMs < staleAt;
  return { silentMs, live };
}

/**
 * mountOpenRuns returns {section, serverNow, stop}: the card that lists the
 * open runs (onPick(business, runId) when one is picked), the server's
 * clock as last learnt (ms, or null before the first event), and stop().
 */
export function mountOpenRuns({ getToken, onPick, onDenied }) {
  const body = el('tbody');
  const empty = el('p', { class: 'muted', text: 'No business has an open run.', hidden: true });
  const more = el('p', { class: 'muted', hidden: true });
  const status = el('span', { class: 'muted', id: 'open-status', role: 'status' });
  const head = el('tr', {}, ...['Business', 'Run', 'Worker', 'Silent for', 'Stale at', 'State', 'Calls'].map((h) => el('th', { scope: 'col', text: h })));
  const section = el(
    'section',
    { class: 'card', id: 'open-runs', 'aria-label': 'Open runs' },
    el('div', { class: 'section-head' }, el('h2', { text: 'Open runs, longest silence first' }), status),
    el('div', { class: 'table-wrap' }, el('table', { class: 'runs open' }, el('thead', {}, head), body)),
    empty,
    more,
  );

  let clock = null; // {serverMs, mono}: the server's time at a monotonic instant
  let runs = [];
  let hasMore = false; // more open runs than the first page
  let feedStatus = 'connecting';
  const rows = new Map(); // run id → {tr, silent, state, ...}
  const serverNow = () => (clock === null ? null : clock.serverMs + (performance.now() - clock.mono));

  function rowFor(run) {
    let r = rows.get(run.run_id);
    if (!r) {
      r = {
        pick: el('button', { type: 'button', class: 'link', on: { click: () => onPick(r.run.business_id, r.run.run_id) } }),
        id: el('span', { class: 'mono' }),
        worker: el('span'),
        silent: el('span'),
        staleAt: el('span'),
        dot: el('span', { 'aria-hidden': 'true' }),
        state: el('span'),
        calls: el('span'),
      };
      r.tr = el(
        'tr',
        {},
        cell('Business', r.pick),
        cell('Run', r.id),
        cell('Worker', r.worker),
        cell('Silent for', r.silent),
        cell('Stale at', r.staleAt),
        cell('State', r.dot, r.state),
        cell('Calls', r.calls),
      );
      rows.set(run.run_id, r);
    }
    r.run = run;
    return r;
  }

  function render() {
    const short = shortIds(runs.map((run) => run.run_id));
    const wanted = runs.map(rowFor);
    const keep = new Set(runs.map((run) => run.run_id));
    for (const [id, r] of rows) {
      if (!keep.has(id)) {
        r.tr.remove();
        rows.delete(id);
      }
    }
    wanted.forEach((r, i) => {
      const run = r.run;
      r.tr.title = run.run_id;
      r.tr.dataset.runId = run.run_id;
      r.tr.dataset.business = run.business_id;
      setText(r.pick, run.business_id);
      setText(r.id, short.get(run.run_id));
      setText(r.worker, run.worker_id);
      setText(r.staleAt, formatTime(run.stale_at));
      setText(r.calls, `${run.completed_calls + run.failed_calls} / ${run.total_calls}`);
      if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] ?? null); // moves only what moved
    });
    empty.hidden = runs.length > 0 || clock === null;
    more.hidden = !hasMore;
    setText(more, `The ${LIMIT} longest silent are shown; more businesses have an open run.`);
    tick();
  }

  function tick() {
    const now = serverNow();
    if (now !== null) {
      for (const r of rows.values()) {
        const { silentMs, live } = openRunState(r.run, now);
        setText(r.silent, formatDuration(silentMs));
        setText(r.state, live ? 'live' : 'silent past TTL');
        r.dot.className = `dot dot-${live ? 'running' : 'silent'}`;
        r.tr.className = live ? 'status-running' : 'status-silent';
      }
    }
    const asOf = clock === null ? '' : ` (list as of ${formatTime(new Date(clock.serverMs).toISOString())})`;
    setText(status, { connecting: 'Connecting…', live: 'Live: runs appear and leave as they start and end', reconnecting: `Reconnecting…${asOf}` }[feedStatus] ?? '');
  }

  const feed = new OpenRunsFeed({
    getToken,
    limit: LIMIT,
    onStatus: (s) => {
      feedStatus = s;
      tick();
    },
    onDenied,
    onSnapshot: (snap, mono) => {
      clock = { serverMs: snap.serverMs, mono };
      runs = snap.runs;
      hasMore = snap.nextCursor !== null;
      render();
    },
  });
  feed.start();
  const ticker = setInterval(tick, 250);
  return {
    section,
    serverNow,
    stop() {
      feed.stop();
      clearInterval(ticker);
    },
  };
}
