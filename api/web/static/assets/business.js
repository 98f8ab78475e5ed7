// business.js — a business's view: the active run as a progress bar (fed by
// watcher.js), Cancel and Pause/Resume with the answer they got, the notes
// that replace the bar when it must go, and the paged history of runs.

import { Watcher } from './watcher.js';
import { el, replace, setText } from './dom.js';
import { ApiError, businessPath } from './api.js';
import { renderHistory } from './history.js';
import {
  ago,
  counts,
  describeEnd,
  formatDuration,
  formatEta,
  formatRate,
  formatTime,
  progressStats,
  shortId,
} from './format.js';

const CONNECTION_TEXT = {
  idle: 'Watching for a run to start…',
  streaming: 'Live',
  polling: 'Live (checking every second)',
  reconnecting: 'Reconnecting…',
};

/**
 * mountBusiness renders business's view into root and starts watching. opts:
 * api (createApi), getToken, canAct (the role may cancel and pause),
 * watch (extra Watcher options, e.g. maxWatchMs), onUnauthorized. It returns
 * {stop, restart}: stop ends the watcher and the page's ticker.
 */
export function mountBusiness(root, { business, api, getToken, canAct = true, watch = {}, onUnauthorized = () => {} }) {
  const base = businessPath(business);
  const knownEnded = new Set(); // runs known to have ended never show a bar again
  const samples = new Map(); // run id → [{t, done}] for the rate
  let ticker = null;

  // --- the active run's card ---------------------------------------------
  const runId = el('span', { class: 'mono' });
  const badges = {
    paused: el('span', { class: 'badge badge-paused', text: 'Paused', hidden: true }),
    stalled: el('span', { class: 'badge badge-stalled', text: 'Stalled', hidden: true }),
    stopping: el('span', { class: 'badge badge-stopping', text: 'Stopping', hidden: true }),
  };
  const segDone = el('div', { class: 'seg seg-completed' });
  const segFailed = el('div', { class: 'seg seg-failed' });
  const bar = el('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Calls done', 'aria-valuemin': '0', 'aria-valuemax': '100' }, segDone, segFailed);
  const pct = el('span', { class: 'pct' });
  const countLine = el('p', { class: 'counts' });
  const rate = el('dd', { class: 'rate' });
  const eta = el('dd', { class: 'eta' });
  const worker = el('dd', { class: 'worker' });
  const started = el('dd', { class: 'started' });
  const life = el('p', { class: 'life' });
  const stallNote = el('p', { class: 'stall-note', hidden: true });
  const pauseBtn = el('button', { type: 'button', class: 'pause', hidden: true, on: { click: () => pauseOrResume() } });
  const cancelBtn = el('button', { type: 'button', class: 'cancel danger', text: 'Cancel run', on: { click: () => cancel(watcher.run) } });
  const card = el(
    'section',
    { class: 'card run-card', id: 'active-run', hidden: true, 'aria-label': 'Active run' },
    el('div', { class: 'run-head' }, el('h3', {}, 'Active run ', runId), el('span', { class: 'badges' }, badges.paused, badges.stalled, badges.stopping)),
    el('div', { class: 'bar-row' }, bar, pct),
    countLine,
    el(
      'dl',
      { class: 'facts' },
      el('div', {}, el('dt', { text: 'Rate' }), rate),
      el('div', {}, el('dt', { text: 'ETA' }), eta),
      el('div', {}, el('dt', { text: 'Worker' }), worker),
      el('div', {}, el('dt', { text: 'Started' }), started),
    ),
    life,
    stallNote,
    canAct ? el('div', { class: 'actions' }, pauseBtn, cancelBtn) : null,
  );

  const conn = el('p', { class: 'conn', id: 'connection' });
  const note = el('div', { class: 'note', id: 'watch-note', role: 'status', hidden: true });
  const answer = el('div', { class: 'answer', id: 'answer', role: 'status', 'aria-live': 'polite', hidden: true });
  const history = el('section', { class: 'card', id: 'history', 'aria-label': 'History of runs' });

  replace(root, el('div', { class: 'business-head' }, el('h2', {}, 'Business ', el('span', { class: 'mono', text: business })), conn), answer, card, note, history);

  // --- the watcher ---------------------------------------------------------
  const watcher = new Watcher({ business, getToken, ...watch });
  watcher.addEventListener('run', (e) => showRun(e.detail.run));
  watcher.addEventListener('ended', (e) => {
    const r = e.detail.run;
    historyView.note(r);
    knownEnded.add(r.run_id);
    hideBar();
    answer.hidden = true; // an answer about this run ("Stopping …") is history now
    showNote('info', describeEnd(r));
    historyView.reload();
  });
  watcher.addEventListener('inactive', (e) => {
    const { reason, run } = e.detail;
    hideBar();
    if (run && run.status === 'running' && !knownEnded.has(run.run_id) && reason !== 'invalid') {
      showSilent(run, reason);
    } else if (reason === 'invalid') {
      showNote('warn', 'The server sent an answer this page does not understand, so the bar is hidden. Checking again…');
    } else if (!run) {
      showNote('info', 'No active run.');
    }
    historyView.reload();
  });
  watcher.addEventListener('lost', () => {
    hideBar();
    showNote('error', 'Lost contact with the server. The bar is hidden because its progress can no longer be confirmed.', retryButton('Try again'));
    setText(conn, 'Not watching');
  });
  watcher.addEventListener('stopped', (e) => {
    hideBar();
    const { reason } = e.detail;
    if (reason === 'max_duration') {
      const after = formatDuration(watch.maxWatchMs ?? 20 * 60e3);
      showNote('info', `Stopped watching after ${after} — refresh to check again.`, retryButton('Check again'));
    } else if (reason === 'unauthorized') {
      onUnauthorized(e.detail.status);
    }
    setText(conn, 'Not watching');
  });
  watcher.addEventListener('connection', (e) => setText(conn, CONNECTION_TEXT[e.detail.state] ?? ''));

  function retryButton(label) {
    return el('button', { type: 'button', text: label, on: { click: () => restart() } });
  }

  // --- rendering -------------------------------------------------------------
  function showRun(run) {
    if (knownEnded.has(run.run_id)) return hideBar();
    if (!samples.has(run.run_id)) historyView.reload(); // a new run: list it
    historyView.note(run);
    const list = samples.get(run.run_id) ?? [];
    const t = Date.parse(run.last_heartbeat_at);
    if (!list.length || list.at(-1).t < t) list.push({ t, done: run.completed_calls + run.failed_calls });
    samples.set(run.run_id, list.slice(-50));
    const s = progressStats(run, list);
    setText(runId, shortId(run.run_id));
    runId.title = run.run_id;
    const total = Math.max(run.total_calls, 1);
    segDone.style.width = `${(100 * run.completed_calls) / total}%`;
    segFailed.style.width = `${(100 * run.failed_calls) / total}%`;
    const pctText = `${Math.floor(s.pct)}%`;
    bar.setAttribute('aria-valuenow', String(Math.floor(s.pct)));
    bar.setAttribute('aria-valuetext', `${s.done} of ${run.total_calls} calls done: ${run.completed_calls} completed, ${run.failed_calls} failed`);
    setText(pct, pctText);
    setText(countLine, counts(run));
    setText(rate, run.paused ? 'paused' : formatRate(s.ratePerMin));
    setText(eta, run.paused ? 'paused' : formatEta(s.etaMs));
    setText(worker, run.worker_id);
    setText(started, formatTime(run.started_at));
    badges.paused.hidden = !run.paused;
    badges.stalled.hidden = !run.stalled;
    badges.stopping.hidden = !run.cancel_requested;
    stallNote.hidden = !run.stalled;
    if (run.stalled) setText(stallNote, `No progress since ${formatTime(run.stalled_since ?? run.last_heartbeat_at)}: the worker is alive but stuck.`);
    pauseBtn.hidden = typeof run.paused !== 'boolean' || run.cancel_requested;
    setText(pauseBtn, run.paused ? 'Resume' : 'Pause');
    cancelBtn.disabled = run.cancel_requested;
    setText(cancelBtn, run.cancel_requested ? 'Stopping…' : 'Cancel run');
    card.hidden = false;
    note.hidden = true;
    tick();
    if (ticker === null) ticker = setInterval(tick, 1000);
  }

  function tick() {
    const run = watcher.run;
    const now = watcher.serverNow();
    if (!run || now === null) return;
    setText(life, `Last sign of life ${ago(Date.parse(run.last_heartbeat_at), now)}`);
  }

  function hideBar() {
    card.hidden = true;
    if (ticker !== null) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  function showNote(kind, text, ...extra) {
    note.className = `note note-${kind}`;
    replace(note, el('p', { text }), ...extra);
    note.hidden = false;
  }

  function showSilent(run, reason) {
    const since = formatTime(run.last_heartbeat_at);
    const why = reason === 'stale' ? 'its time to live passed with no sign of life' : 'the server no longer counts it as active';
    const text = `Run ${shortId(run.run_id)} is not active: ${why}. Last sign of life from worker ${run.worker_id} at ${since}.`;
    const btn = canAct ? el('button', { type: 'button', class: 'cancel danger', text: 'Cancel this run', on: { click: () => cancel(run) } }) : null;
    showNote('warn', text, btn);
  }

  function showAnswer(kind, text) {
    answer.className = `answer answer-${kind}`;
    setText(answer, text);
    answer.hidden = false;
  }

  // --- actions ---------------------------------------------------------------
  async function cancel(run) {
    if (!run) return;
    const buttons = root.querySelectorAll('button.cancel');
    buttons.forEach((b) => (b.disabled = true));
    showAnswer('info', 'Cancelling…');
    let position;
    try {
      const res = await api.post(`${base}/runs/${encodeURIComponent(run.run_id)}/cancel`, {});
      historyView.note(res.body);
      position = res.body.position;
      if (res.status === 202) {
        showAnswer('info', 'Stopping — the worker stops at its next heartbeat');
        if (watcher.run?.run_id === run.run_id) showRun(res.body);
      } else {
        knownEnded.add(run.run_id);
        hideBar();
        note.hidden = true;
        showAnswer('done', res.body.end_reason === 'cancel_forced' ? 'Cancelled: the worker was silent' : describeEnd(res.body));
      }
    } catch (err) {
      if (err instanceof ApiError && err.code === 'run_ended' && err.problem?.run) {
        historyView.note(err.problem.run);
        knownEnded.add(run.run_id);
        hideBar();
        note.hidden = true;
        showAnswer('info', `The run had already ended. ${describeEnd(err.problem.run)}`);
      } else {
        showAnswer('error', `Cancel failed: ${err.message}. Try again.`);
      }
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      if (watcher.run) cancelBtn.disabled = watcher.run.cancel_requested;
      historyView.reload(position);
    }
  }

  async function pauseOrResume() {
    const run = watcher.run;
    if (!run) return;
    const action = run.paused ? 'resume' : 'pause';
    pauseBtn.disabled = true;
    try {
      const res = await api.post(`${base}/runs/${encodeURIComponent(run.run_id)}/${action}`, {});
      historyView.note(res.body);
      showAnswer('info', action === 'pause' ? 'Paused — the worker pauses at its next heartbeat' : 'Resumed — the worker goes on at its next heartbeat');
      if (watcher.run?.run_id === run.run_id) showRun(res.body);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405) && err.code !== 'not_found') {
        pauseBtn.hidden = true;
        showAnswer('error', 'This server does not offer pause and resume.');
      } else if (err instanceof ApiError && err.code === 'run_ended') {
        knownEnded.add(run.run_id);
        hideBar();
        showAnswer('info', `The run had already ended. ${err.problem?.run ? describeEnd(err.problem.run) : ''}`);
      } else {
        showAnswer('error', `${action === 'pause' ? 'Pause' : 'Resume'} failed: ${err.message}.`);
      }
    } finally {
      pauseBtn.disabled = false;
    }
  }

  // --- history -----------------------------------------------------------------
  const historyView = renderHistory(history, { api, base, canAct, onCancel: (run) => cancel(run) });

  function restart() {
    watcher.stop();
    note.hidden = true;
    watcher.start();
  }

  watcher.start();
  historyView.reload();
  return {
    stop() {
      watcher.stop();
      hideBar();
    },
    restart,
  };
}
