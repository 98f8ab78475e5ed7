// history.js — a business's runs, newest first, paged with the API's keyset
// cursors (kept in a stack so "Newer" can go back).

import { append, cell, el, hiddenText, ident, replace, setText } from './dom.js';
import { formatDateTime, shortId, statusText } from './format.js';
import { endReason } from './reasons.js';

const PAGE_SIZE = 10;

/**
 * renderHistory renders the history into root and returns {reload, note}:
 * reload fetches the page shown again; note(run) records a run state the page
 * learnt elsewhere (a command's answer, the watcher), so the list never shows
 * an older state of it than the page knows, even while the read model that
 * the list comes from catches up.
 */
export function renderHistory(root, { api, base, canAct, onCancel }) {
  const cursors = [null]; // cursors[i] starts page i
  const known = new Map(); // run id → the newest state the page has seen
  let page = 0;
  let next = null;
  let loading = null;
  let again = false;

  const body = el('tbody');
  const empty = el('p', { class: 'muted', text: 'No runs yet.', hidden: true });
  const error = el('p', { class: 'error-text', role: 'alert', hidden: true });
  const table = el('table', { class: 'runs' });
  const label = el('span', { class: 'muted' });
  const newer = el('button', { type: 'button', text: '← Newer', on: { click: () => go(page - 1) } });
  const older = el('button', { type: 'button', text: 'Older →', on: { click: () => go(page + 1) } });
  const head = el(
    'tr',
    {},
    ...['Started', 'Status', 'Why it ended', 'Calls', 'Worker'].map((h) => el('th', { scope: 'col', text: h })),
    el('th', { scope: 'col' }, hiddenText('Actions')),
  );
  replace(
    root,
    el('h3', { text: 'History' }),
    error,
    el('div', { class: 'table-wrap' }, append(table, el('thead', {}, head), body)),
    empty,
    el('div', { class: 'pager' }, newer, label, older),
  );

  function newest(run) {
    const k = known.get(run.run_id);
    return k && k.version > run.version ? k : run;
  }

  function note(run) {
    const k = known.get(run.run_id);
    if (k && k.version >= run.version) return;
    known.set(run.run_id, run);
    const tr = [...body.rows].find((r) => r.dataset.runId === run.run_id);
    if (tr) tr.replaceWith(row(run));
  }

  function row(run) {
    run = newest(run);
    const stuck = run.status === 'running' && run.active === false;
    const why = endReason(run) || (stuck ? 'not ended: silent past its TTL' : '—');
    const act = el('td', { class: 'row-actions' });
    if (canAct && stuck) act.append(el('button', { type: 'button', class: 'cancel danger', text: 'Cancel', on: { click: () => onCancel(run) } }));
    const tr = el(
      'tr',
      { class: `status-${run.status}${stuck ? ' status-silent' : ''}`, title: run.run_id, dataset: { runId: run.run_id } },
      cell('Started', formatDateTime(run.started_at), ' ', el('span', { class: 'mono muted run-id', text: shortId(run.run_id, [...known.keys()]) })),
      cell('Status', el('span', { class: `dot dot-${stuck ? 'silent' : run.status}`, 'aria-hidden': 'true' }), statusText(run)),
      cell('Why it ended', why),
      // The marks are for the eye; a screen reader reads the words.
      cell(
        'Calls',
        `${run.completed_calls} `,
        el('span', { 'aria-hidden': 'true', text: '✓' }),
        hiddenText('completed,'),
        ` ${run.failed_calls} `,
        el('span', { 'aria-hidden': 'true', text: '✗' }),
        hiddenText('failed,'),
        ` of ${run.total_calls}`,
      ),
      cell('Worker', ident(run.worker_id, { max: 32, label: 'worker id' })),
      act,
    );
    return tr;
  }

  async function load(after) {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
        if (cursors[page]) q.set('cursor', cursors[page]);
        // Read-your-writes where the server offers it (the position of a command's answer).
        if (Number.isSafeInteger(after)) q.set('after', String(after));
        const res = await api.get(`${base}/runs?${q}`);
        const runs = res.body.runs ?? [];
        next = res.body.next_cursor ?? null;
        replace(body, runs.map(row));
        empty.hidden = runs.length > 0 || page > 0;
        error.hidden = true;
        table.classList.remove('out-of-date');
      } catch (err) {
        setText(error, `Could not load the history: ${err.message}. The list below may be out of date.`);
        error.hidden = false;
        table.classList.add('out-of-date');
      } finally {
        newer.disabled = page === 0;
        older.disabled = !next;
        setText(label, `Page ${page + 1}`);
        loading = null;
      }
    })();
    await loading;
    if (again) {
      again = false;
      await load();
    }
  }

  function go(p) {
    if (p < 0 || (p > page && !next)) return;
    if (p > page) cursors[p] = next;
    page = p;
    load();
  }

  return { reload: (after) => load(after), note };
}
