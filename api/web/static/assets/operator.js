// operator.js — the operator's console: every business with an open run,
// longest silence first (GET /v1/runs/open), the webhook endpoints that
// need attention (GET /v1/webhooks/failing), and for one business its
// timeline, the replay at an instant, and its live view.

import { cell, el, replace, setText } from './dom.js';
import { businessPath } from './api.js';
import { mountBusiness } from './business.js';
import { businessIdProblem, formatDateTime, localInputValue, parseLocalInput, shortId, shortIds, timeZoneName } from './format.js';
import { actorName, foldSummary, foldTimeline, replayWords, whatHappened } from './timeline.js';
import { mountOpenRuns } from './openruns.js';
import { mountWebhookAttention } from './webhookattention.js';

/**
 * mountOperator renders the console into root. opts: api, claims (the
 * token's), getToken, watch (Watcher options for the live view),
 * onUnauthorized. It returns {stop}.
 */
export function mountOperator(root, { api, claims, getToken, watch = {}, onUnauthorized = () => {} }) {
  let live = null; // the mounted live view of the selected business
  let followNow = null; // keeps the replay instant at now until the operator edits it

  // --- open runs: pushed by the server, counted on its clock ---------------------
  const open = mountOpenRuns({ getToken, onPick: (business, runId) => select(business, runId), onDenied: onUnauthorized });
  const openSection = open.section;
  const serverNow = () => open.serverNow() ?? Date.now();

  // --- webhook endpoints failing or disabled, every business ----------------------
  const attention = mountWebhookAttention({ api, onDenied: onUnauthorized });

  // --- one business: replay, timeline, live view ---------------------------------
  const fixed = claims.business_id !== '*';
  // No pattern attribute: the browser would only mark the field, and drop the
  // input without a word; the page says what is wrong instead.
  const businessInput = el('input', {
    id: 'business-input', name: 'business', type: 'text', autocomplete: 'off',
    spellcheck: 'false', value: fixed ? claims.business_id : '', readonly: fixed, 'aria-describedby': 'business-error',
  });
  const businessError = el('p', { id: 'business-error', class: 'error-text', role: 'alert', hidden: true });
  function pickTyped() {
    const problem = businessIdProblem(businessInput.value);
    setText(businessError, problem);
    businessError.hidden = problem === '';
    if (problem) {
      businessInput.setAttribute('aria-invalid', 'true');
      businessInput.focus();
      return;
    }
    businessInput.removeAttribute('aria-invalid');
    select(businessInput.value, null);
  }
  const pickForm = el(
    'form',
    { class: 'inline', novalidate: true, on: { submit: (e) => (e.preventDefault(), pickTyped()) } },
    el('label', { for: 'business-input', text: 'Business' }),
    businessInput,
    el('button', { type: 'submit', text: 'Show' }),
  );
  const detail = el('div', { id: 'business-detail' }, el('p', { class: 'muted', text: 'Pick a business in the list above, or type its id, to see its timeline, replay an instant, and watch it live.' }));
  const businessSection = el('section', { class: 'card', id: 'business-panel', 'aria-label': 'One business' }, el('h2', { text: 'One business' }), pickForm, businessError, detail);

  replace(root, openSection, attention.section, businessSection);

  function select(business, runId) {
    businessInput.value = business;
    businessInput.removeAttribute('aria-invalid');
    businessError.hidden = true;
    live?.stop();
    live = null;

    // Replay at an instant.
    const zone = timeZoneName();
    const at = el('input', {
      id: 'replay-at', type: 'text', inputmode: 'numeric', autocomplete: 'off', spellcheck: 'false', required: true,
      value: localInputValue(serverNow()), 'aria-describedby': 'replay-at-help',
    });
    // The instant is now, on the server's clock, until the operator edits it.
    clearInterval(followNow);
    followNow = setInterval(() => {
      if (!at.isConnected || at.dataset.edited) return clearInterval(followNow);
      if (document.activeElement !== at) at.value = localInputValue(serverNow());
    }, 1000);
    at.addEventListener('input', () => (at.dataset.edited = 'yes'));
    const replayOut = el('div', { id: 'replay-answer', class: 'replay', role: 'status', 'aria-live': 'polite' });
    const replayForm = el(
      'form',
      { class: 'inline replay-form', on: { submit: (e) => (e.preventDefault(), replay(business, at.value, replayOut)) } },
      el('label', { for: 'replay-at', text: `Instant (${zone})` }),
      at,
      el('button', { type: 'submit', text: 'Replay' }),
      el('span', { id: 'replay-at-help', class: 'muted help', text: 'YYYY-MM-DD HH:MM:SS, 24-hour; now until you change it' }),
    );

    // Timeline.
    const tlBody = el('tbody');
    const tlMore = el('button', { type: 'button', text: 'Load more', hidden: true });
    const tlNote = el('p', { class: 'muted' });
    const onlyRun = { id: runId };
    const scope = el('p', { class: 'muted' });
    const tl = { cursor: null, events: [], open: new Set() }; // open: the folds shown in full, by first position
    function eventRow(ev, short, workerOf, extra = {}) {
      return el(
        'tr',
        { class: `ev-${ev.type}`, ...extra },
        cell('Time', formatDateTime(ev.occurred_at)),
        cell('Run', el('span', { class: 'mono', text: short.get(ev.run_id) })),
        cell('Event', ev.type),
        cell('Actor', actorName(ev.actor, workerOf.get(ev.run_id))),
        cell('What happened', whatHappened(ev)),
      );
    }
    function renderTimeline() {
      const short = shortIds(tl.events.map((ev) => ev.run_id));
      const workerOf = new Map(tl.events.filter((ev) => ev.type === 'RunStarted').map((ev) => [ev.run_id, ev.data?.worker_id]));
      const rows = [];
      for (const item of foldTimeline(tl.events)) {
        if (item.kind === 'event') {
          rows.push(eventRow(item.ev, short, workerOf));
          continue;
        }
        const evs = item.events;
        const key = evs[0].position;
        const open = tl.open.has(key);
        const first = evs[0];
        const last = evs.at(-1);
        const detail = evs.map((ev) => eventRow(ev, short, workerOf, { class: 'ev-Heartbeat hb-detail', hidden: !open }));
        const toggle = el('button', {
          type: 'button', class: 'link fold', 'aria-expanded': String(open),
          title: open ? 'Hide these heartbeats' : 'Show each heartbeat',
          text: `Heartbeat ×${evs.length}`,
          on: {
            click: () => {
              const now = toggle.getAttribute('aria-expanded') !== 'true';
              if (now) tl.open.add(key);
              else tl.open.delete(key);
              toggle.setAttribute('aria-expanded', String(now));
              toggle.title = now ? 'Hide these heartbeats' : 'Show each heartbeat';
              for (const r of detail) r.hidden = !now;
            },
          },
        });
        const from = formatDateTime(first.occurred_at);
        const to = formatDateTime(last.occurred_at);
        const span = from === to ? from : `${from} – ${from.slice(0, 10) === to.slice(0, 10) ? to.slice(11) : to}`;
        rows.push(
          el(
            'tr',
            { class: 'ev-Heartbeat hb-group' },
            cell('Time', span),
            cell('Run', el('span', { class: 'mono', text: short.get(first.run_id) })),
            cell('Event', toggle),
            cell('Actor', actorName(first.actor, workerOf.get(first.run_id))),
            cell('What happened', foldSummary(evs)),
          ),
          ...detail,
        );
      }
      replace(tlBody, rows);
      tlMore.hidden = !tl.cursor;
      setText(tlNote, tl.events.length ? '' : 'No events.');
    }
    async function loadTimeline(reset) {
      if (reset) {
        tl.cursor = null;
        tl.events = [];
      }
      const q = new URLSearchParams({ limit: '200' });
      if (onlyRun.id) q.set('run', onlyRun.id);
      if (tl.cursor) q.set('cursor', tl.cursor);
      try {
        const res = await api.get(`${businessPath(business)}/timeline?${q}`);
        tl.events.push(...(res.body.events ?? []));
        tl.cursor = res.body.next_cursor ?? null;
        renderTimeline();
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
    const zone = timeZoneName();
    const ms = parseLocalInput(value);
    if (!Number.isFinite(ms)) {
      out.className = 'replay';
      replace(out, el('p', { class: 'error-text', text: `Write the instant as YYYY-MM-DD HH:MM:SS in ${zone}, e.g. ${localInputValue(serverNow())}.` }));
      return;
    }
    const iso = new Date(ms).toISOString();
    replace(out, el('p', { class: 'muted', text: `Replaying ${formatDateTime(iso)} (${zone})…` }));
    try {
      const res = await api.get(`${businessPath(business)}/replay?${new URLSearchParams({ at: iso })}`);
      const r = res.body;
      const words = replayWords(r, zone);
      out.className = `replay replay-${r.active ? 'active' : 'inactive'}`;
      replace(out, el('p', { class: 'replay-status', text: words.answer }), words.detail ? el('p', { class: 'muted', text: words.detail }) : null);
    } catch (err) {
      out.className = 'replay';
      replace(out, el('p', { class: 'error-text', text: `Replay failed: ${err.message}.` }));
    }
  }

  if (fixed) select(claims.business_id, null);
  return {
    stop() {
      open.stop();
      attention.stop();
      clearInterval(followNow);
      live?.stop();
      live = null;
    },
  };
}
