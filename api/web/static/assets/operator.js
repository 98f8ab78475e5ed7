// operator.js — the operator's console: every business with an open run,
// longest silence first (GET /v1/runs/open), and for one business its
// timeline, the replay at an instant, and its live view.

import { cell, el, replace, setText } from './dom.js';
import { businessPath } from './api.js';
import { mountBusiness } from './business.js';
import { formatDateTime, formatDuration, formatTime, localInputValue, shortId } from './format.js';

const BUSINESS_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * mountOperator renders the console into root. opts: api, claims (the
 * token's), getToken, watch (Watcher options for the live view),
 * onUnauthorized. It returns {stop}.
 */
export function mountOperator(root, { api, claims, getToken, watch = {}, onUnauthorized = () => {} }) {
  let serverNowMs = null; // the server's clock at the last answer that told it
  let live = null; // the mounted live view of the selected business

  // --- open runs ---------------------------------------------------------------
  const openBody = el('tbody');
  const openEmpty = el('p', { class: 'muted', text: 'No business has an open run.', hidden: true });
  const openError = el('p', { class: 'error-text', role: 'alert', hidden: true });
  const asOf = el('span', { class: 'muted' });
  const more = el('button', { type: 'button', text: 'More', hidden: true, on: { click: () => loadOpen(false) } });
  let openCursor = null;
  const openHead = el('tr', {}, ...['Business', 'Run', 'Worker', 'Silent for', 'Stale at', 'State', 'Calls'].map((h) => el('th', { scope: 'col', text: h })));
  const openSection = el(
    'section',
    { class: 'card', id: 'open-runs', 'aria-label': 'Open runs' },
    el('div', { class: 'section-head' }, el('h2', { text: 'Open runs, longest silence first' }), el('span', {}, asOf, ' ', el('button', { type: 'button', text: 'Refresh', on: { click: () => loadOpen(true) } }))),
    el('div', { class: 'table-wrap' }, el('table', { class: 'runs open' }, el('thead', {}, openHead), openBody)),
    openEmpty,
    openError,
    el('div', { class: 'pager' }, more),
  );

  function openRow(run, _, page) {
    const now = Date.parse(run.server_time);
    const silent = now - Date.parse(run.last_heartbeat_at);
    const pick = el('button', { type: 'button', class: 'link', text: run.business_id, on: { click: () => select(run.business_id, run.run_id) } });
    const state = run.active ? 'live' : 'silent past TTL';
    const tr = el(
      'tr',
      { class: run.active ? 'status-running' : 'status-silent', title: run.run_id, dataset: { runId: run.run_id, business: run.business_id } },
      cell('Business', pick),
      cell('Run', el('span', { class: 'mono', text: shortId(run.run_id, page.map((r) => r.run_id)) })),
      cell('Worker', run.worker_id),
      cell('Silent for', formatDuration(silent)),
      cell('Stale at', formatTime(run.stale_at)),
      cell('State', el('span', { class: `dot dot-${run.active ? 'running' : 'silent'}`, 'aria-hidden': 'true' }), state),
      cell('Calls', `${run.completed_calls + run.failed_calls} / ${run.total_calls}`),
    );
    return tr;
  }

  async function loadOpen(reset) {
    if (reset) openCursor = null;
    const q = new URLSearchParams({ limit: '50' });
    if (openCursor) q.set('cursor', openCursor);
    try {
      const res = await api.get(`/v1/runs/open?${q}`);
      const runs = res.body.runs ?? [];
      const rows = runs.map(openRow);
      if (reset) replace(openBody, rows);
      else openBody.append(...rows);
      openCursor = res.body.next_cursor ?? null;
      more.hidden = !openCursor;
      openEmpty.hidden = openBody.rows.length > 0;
      openError.hidden = true;
      if (runs.length) serverNowMs = Date.parse(runs[0].server_time);
      setText(asOf, runs.length ? `as of ${formatTime(runs[0].server_time)}` : '');
    } catch (err) {
      if (err.status === 401) return onUnauthorized(401);
      setText(openError, `Could not load the open runs: ${err.message}.`);
      openError.hidden = false;
    }
  }

  // --- one business: replay, timeline, live view ---------------------------------
  const fixed = claims.business_id !== '*';
  const businessInput = el('input', {
    id: 'business-input', name: 'business', type: 'text', required: true, pattern: BUSINESS_ID.source, autocomplete: 'off',
    spellcheck: 'false', value: fixed ? claims.business_id : '', readonly: fixed, 'aria-label': 'Business id',
  });
  const pickForm = el(
    'form',
    { class: 'inline', on: { submit: (e) => (e.preventDefault(), BUSINESS_ID.test(businessInput.value) && select(businessInput.value.trim(), null)) } },
    el('label', { for: 'business-input', text: 'Business' }),
    businessInput,
    el('button', { type: 'submit', text: 'Show' }),
  );
  const detail = el('div', { id: 'business-detail' }, el('p', { class: 'muted', text: 'Pick a business in the list above, or type its id, to see its timeline, replay an instant, and watch it live.' }));
  const businessSection = el('section', { class: 'card', id: 'business-panel', 'aria-label': 'One business' }, el('h2', { text: 'One business' }), pickForm, detail);

  replace(root, openSection, businessSection);

  function select(business, runId) {
    businessInput.value = business;
    live?.stop();
    live = null;

    // Replay at an instant.
    const at = el('input', { id: 'replay-at', type: 'datetime-local', step: '1', required: true, value: localInputValue(serverNowMs ?? Date.now()) });
    const replayOut = el('div', { id: 'replay-answer', class: 'replay', role: 'status', 'aria-live': 'polite' });
    const replayForm = el(
      'form',
      { class: 'inline', on: { submit: (e) => (e.preventDefault(), replay(business, at.value, replayOut)) } },
      el('label', { for: 'replay-at', text: 'Instant (your local time)' }),
      at,
      el('button', { type: 'submit', text: 'Replay' }),
    );

    // Timeline.
    const tlBody = el('tbody');
    const tlMore = el('button', { type: 'button', text: 'Load more', hidden: true });
    const tlNote = el('p', { class: 'muted' });
    const onlyRun = { id: runId };
    const scope = el('p', { class: 'muted' });
    const tl = { cursor: null };
    async function loadTimeline(reset) {
      if (reset) tl.cursor = null;
      const q = new URLSearchParams({ limit: '200' });
      if (onlyRun.id) q.set('run', onlyRun.id);
      if (tl.cursor) q.set('cursor', tl.cursor);
      try {
        const res = await api.get(`${businessPath(business)}/timeline?${q}`);
        const shown = (res.body.events ?? []).map((ev) => ev.run_id);
        const rows = (res.body.events ?? []).map((ev) =>
          el(
            'tr',
            { class: `ev-${ev.type}` },
            cell('Time', formatDateTime(ev.occurred_at)),
            cell('Run', el('span', { class: 'mono', text: shortId(ev.run_id, shown) })),
            cell('Event', ev.type),
            cell('Actor', ev.actor),
            cell('What happened', ev.summary),
          ),
        );
        if (reset) replace(tlBody, rows);
        else tlBody.append(...rows);
        tl.cursor = res.body.next_cursor ?? null;
        tlMore.hidden = !tl.cursor;
        setText(tlNote, tlBody.rows.length ? '' : 'No events.');
      } catch (err) {
        setText(tlNote, `Could not load the timeline: ${err.message}.`);
      }
    }
    tlMore.addEventListener('click', () => loadTimeline(false));
    function renderScope() {
      if (onlyRun.id) {
        replace(scope, `Run ${shortId(onlyRun.id)} only. `, el('button', { type: 'button', class: 'link', text: 'Show the whole business', on: { click: () => ((onlyRun.id = null), renderScope(), loadTimeline(true)) } }));
      } else {
        replace(scope, 'Every run of the business, oldest first.');
      }
    }
    renderScope();

    // Live view, mounted when opened.
    const liveRoot = el('div', { class: 'live' });
    const liveBox = el('details', { id: 'live-view' }, el('summary', { text: 'Live view and history (Cancel, Pause)' }), liveRoot);
    liveBox.addEventListener('toggle', () => {
      if (liveBox.open && !live) live = mountBusiness(liveRoot, { business, api, getToken, canAct: true, watch, onUnauthorized });
      else if (!liveBox.open && live) {
        live.stop();
        live = null;
      }
    });

    replace(
      detail,
      el('h3', {}, 'Replay of ', el('span', { class: 'mono', text: business })),
      replayForm,
      replayOut,
      el('h3', { text: 'Timeline' }),
      scope,
      el('div', { class: 'table-wrap' }, el('table', { class: 'runs timeline' }, el('thead', {}, el('tr', {}, ...['Time', 'Run', 'Event', 'Actor', 'What happened'].map((h) => el('th', { scope: 'col', text: h })))), tlBody)),
      tlNote,
      el('div', { class: 'pager' }, tlMore),
      liveBox,
    );
    loadTimeline(true);
    detail.scrollIntoView?.({ block: 'nearest' });
  }

  async function replay(business, value, out) {
    const ms = Date.parse(value); // a datetime-local value without a zone is local time
    if (!Number.isFinite(ms)) {
      replace(out, el('p', { class: 'error-text', text: 'Pick an instant first.' }));
      return;
    }
    const iso = new Date(ms).toISOString();
    replace(out, el('p', { class: 'muted', text: `Replaying ${iso}…` }));
    try {
      const res = await api.get(`${businessPath(business)}/replay?${new URLSearchParams({ at: iso })}`);
      const r = res.body;
      const verdict = r.answer_status === 200 ? 'active' : 'no active run';
      const lines = [
        el('p', { class: 'replay-status' }, 'At ', el('span', { class: 'mono', text: r.at }), ` GET …/runs/active would have answered `, el('strong', { text: String(r.answer_status) }), ` (${verdict}).`),
        el('p', { class: 'replay-reason' }, el('strong', { text: 'Why: ' }), r.reason),
      ];
      if (r.run) {
        const run = r.run;
        lines.push(
          el('p', {
            class: 'muted',
            text: `Run ${shortId(run.run_id)}: status ${run.status}, ${run.completed_calls} completed, ${run.failed_calls} failed of ${run.total_calls}, last sign of life ${formatDateTime(run.last_heartbeat_at)}; ${r.events_folded} events folded, TTL ${r.stale_after}.`,
          }),
        );
      }
      out.className = `replay replay-${r.answer_status === 200 ? 'active' : 'inactive'}`;
      replace(out, ...lines);
    } catch (err) {
      out.className = 'replay';
      replace(out, el('p', { class: 'error-text', text: `Replay failed: ${err.message}.` }));
    }
  }

  loadOpen(true);
  if (fixed) select(claims.business_id, null);
  return {
    stop() {
      live?.stop();
      live = null;
    },
  };
}
