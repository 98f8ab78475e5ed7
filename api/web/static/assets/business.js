// business.js — a business's view: the active run as a progress bar (fed by
// watcher.js), Cancel and Pause/Resume with the answer they got, the notes
// that replace the bar when it must go, and the paged history of runs.

import { Watcher, runPace } from './watcher.js';
import { el, ident, replace, setText } from './dom.js';
import { ApiError, businessPath } from './api.js';
import { renderHistory } from './history.js';
import { describeEnd } from './reasons.js';
import { ago, counts, formatDuration, formatEta, formatRate, formatTime, shortId } from './format.js';

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
  let shown = null; // the newest state of the shown run: the watcher's, or a command's answer

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
  // The buttons are never disabled (a disabled button loses the keyboard's
  // focus): while a request is in flight they are aria-disabled and
  // aria-busy, and ignore clicks.
  const pauseBtn = el('button', { type: 'button', class: 'pause', hidden: true, on: { click: () => pauseOrResume() } });
  const cancelBtn = el('button', { type: 'button', class: 'cancel danger', text: 'Cancel run', on: { click: () => cancel(current()) } });
  // What the page learnt of the worker's acknowledgement: the server time of
  // the last pause, resume or cancel this page asked for, by run.
  const asked = { runId: null, action: null, at: NaN };
  const card = el(
    'section',
    { class: 'card run-card', id: 'active-run', hidden: true, 'aria-label': 'Active run' },
    el('div', { class: 'run-head' }, el('h3', {}, 'Active run ', runId), el('span', { class: 'badges' }, badges.paused, badges.stalled, badges.stopping)),
    // The controls come first: nothing above them changes height while they are used.
    canAct ? el('div', { class: 'actions' }, pauseBtn, cancelBtn) : null,
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
  );

  const conn = el('p', { class: 'conn', id: 'connection' });
  const note = el('div', { class: 'note', id: 'watch-note', role: 'status', hidden: true });
  const answer = el('div', { class: 'answer', id: 'answer', hidden: true });
  // The live region that announces the result of Pause, Resume and Cancel
  // (always present: a region that appears with its text is not announced).
  const announce = el('div', { class: 'visually-hidden', id: 'announce', role: 'status', 'aria-live': 'polite' });
  const history = el('section', { class: 'card', id: 'history', 'aria-label': 'History of runs' });

  // Answers and notes come below the card: a banner never moves the controls.
  replace(
    root,
    el('div', { class: 'business-head' }, el('h2', {}, 'Business ', el('span', { class: 'mono', text: business })), conn),
    card,
    answer,
    note,
    announce,
    history,
  );

  // --- the watcher ---------------------------------------------------------
  const watcher = new Watcher({ business, getToken, waitForStart: true, ...watch });
  watcher.addEventListener('run', (e) => showRun(e.detail.run));
  watcher.addEventListener('ended', (e) => {
    const r = e.detail.run;
    historyView.note(r);
    hideBar();
    historyView.reload();
    if (knownEnded.has(r.run_id)) return; // the page ended it (a forced cancel): its answer says how
    knownEnded.add(r.run_id);
    answer.hidden = true; // an answer about this run ("Stopping …") is history now
    showNote(r.end_reason === 'completed' && r.pending_calls === 0 ? 'info' : 'warn', describeEnd(r));
  });
  watcher.addEventListener('inactive', (e) => {
    const { reason, run } = e.detail;
    hideBar();
    if (run && run.status === 'running' && !knownEnded.has(run.run_id) && reason !== 'invalid') {
      showSilent(run, reason);
    } else if (reason === 'invalid') {
      showNote('warn', 'The server sent an answer this page does not understand, so the bar is hidden. Checking again…');
    } else if (!run || knownEnded.has(run.run_id) || run.status !== 'running') {
      if (note.hidden) showNote('info', 'No active run.');
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
  watcher.addEventListener('connection', () => tick());

  function retryButton(label) {
    return el('button', { type: 'button', text: label, on: { click: () => restart() } });
  }

  // --- rendering -------------------------------------------------------------
  function showRun(run) {
    // An event older than a command's answer already shown (the stream catching up) changes nothing.
    if (shown && shown.run_id === run.run_id && shown.version > run.version) return;
    shown = run;
    if (knownEnded.has(run.run_id)) return hideBar();
    if (!samples.has(run.run_id)) historyView.reload(); // a new run: list it
    historyView.note(run);
    const list = samples.get(run.run_id) ?? []; // heartbeats only: the start measures no pace
    const t = Date.parse(run.last_heartbeat_at);
    if (!list.length || list.at(-1).t < t) list.push({ t, done: run.completed_calls + run.failed_calls });
    samples.set(run.run_id, list.slice(-50));
    if (runId.dataset.runId !== run.run_id) {
      runId.dataset.runId = run.run_id;
      replace(runId, ident(run.run_id, { max: 8, label: 'run id' }));
      runId.querySelector('bdi').textContent = shortId(run.run_id);
    }
    const total = Math.max(run.total_calls, 1);
    const done = run.completed_calls + run.failed_calls;
    const pctDone = run.total_calls > 0 ? Math.floor((100 * done) / run.total_calls) : 100;
    segDone.style.width = `${(100 * run.completed_calls) / total}%`;
    segFailed.style.width = `${(100 * run.failed_calls) / total}%`;
    bar.setAttribute('aria-valuenow', String(pctDone));
    bar.setAttribute('aria-valuetext', `${done} of ${run.total_calls} calls done: ${run.completed_calls} completed, ${run.failed_calls} failed`);
    setText(pct, `${pctDone}%`);
    setText(countLine, counts(run));
    if (worker.dataset.value !== run.worker_id) {
      worker.dataset.value = run.worker_id;
      replace(worker, ident(run.worker_id, { label: 'worker id' }));
    }
    setText(started, formatTime(run.started_at));
    badges.paused.hidden = !run.paused;
    badges.stopping.hidden = !run.cancel_requested;
    pauseBtn.hidden = typeof run.paused !== 'boolean' || run.cancel_requested;
    setText(pauseBtn, run.paused ? 'Resume' : 'Pause');
    cancelBtn.setAttribute('aria-disabled', String(run.cancel_requested || cancelBtn.getAttribute('aria-busy') === 'true'));
    setText(cancelBtn, run.cancel_requested ? 'Stopping…' : 'Cancel run');
    followAcknowledgement(run);
    card.hidden = false;
    note.hidden = true;
    tick();
    if (ticker === null) ticker = setInterval(tick, 1000);
  }

  // tick says, every second on the server's clock, what is true of the run
  // now: its pace from recent heartbeats only, and silent (no heartbeat) or
  // stalled (heartbeats without progress) in different words.
  function tick() {
    const run = current();
    const now = watcher.serverNow();
    if (!run || now === null) {
      setText(conn, CONNECTION_TEXT[watcher.state] ?? 'Not watching');
      return;
    }
    const p = runPace(run, samples.get(run.run_id) ?? [], now);
    const silentFor = formatDuration(p.silentMs);
    const why = { silent: `silent for ${silentFor}`, stopping: 'stopping', paused: 'paused', stalled: 'stalled', measuring: 'measuring' }[p.state];
    setText(rate, why ? `— (${why})` : formatRate(p.ratePerMin));
    setText(eta, why ? `— (${why})` : formatEta(p.etaMs));
    if (p.state === 'silent') {
      setText(life, `Silent for ${silentFor}: no heartbeat since ${formatTime(run.last_heartbeat_at)}`);
    } else {
      setText(life, `Last sign of life ${ago(Date.parse(run.last_heartbeat_at), now)}`);
    }
    const stalled = p.state === 'stalled' || (p.state !== 'silent' && run.stalled === true);
    badges.stalled.hidden = !stalled;
    stallNote.hidden = !stalled;
    if (stalled) {
      const since = p.lastProgressMs === null ? '—' : formatTime(new Date(p.lastProgressMs).toISOString());
      setText(stallNote, `Stalled since ${since}: heartbeats arrive but carry no progress.`);
    }
    const live = watcher.state === 'streaming' ? 'Live' : (CONNECTION_TEXT[watcher.state] ?? '');
    setText(conn, p.state === 'silent' ? `Connected — no heartbeat from the worker for ${silentFor}` : live);
  }

  // current is the newest state of the shown run the page knows: the
  // watcher's, or a command's answer the stream has not caught up with (the
  // button says Resume: a click must resume, whatever an older event said).
  function current() {
    const w = watcher.run;
    return shown && w && shown.run_id === w.run_id && shown.version >= w.version ? shown : w;
  }

  // followAcknowledgement turns "… at its next heartbeat" into what the
  // worker did, once a heartbeat after the request arrives.
  function followAcknowledgement(run) {
    if (asked.runId !== run.run_id || !(Date.parse(run.last_heartbeat_at) > asked.at)) return;
    const at = formatTime(run.last_heartbeat_at);
    if (asked.action === 'pause' && run.paused) showAnswer('done', `Paused — the worker acknowledged at ${at} and is not dialing`);
    else if (asked.action === 'resume' && !run.paused) showAnswer('done', `Resumed — the worker acknowledged at ${at} and goes on`);
    else if (asked.action === 'cancel' && run.cancel_requested) showAnswer('info', `Stopping — the worker was told at ${at}; waiting for it to stop`);
    else return;
    asked.runId = null;
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

  // showSilent: the run is open but not active. The note stays until the
  // run ends (the business stream then says how, and the note follows).
  function showSilent(run, reason) {
    const since = formatTime(run.last_heartbeat_at);
    const why = reason === 'stale' ? 'its time to live passed with no sign of life' : 'the server no longer counts it as active';
    const text = el(
      'p',
      {},
      `Run ${shortId(run.run_id)} is not active: ${why}. Last sign of life from worker `,
      ident(run.worker_id, { label: 'worker id' }),
      ` at ${since}. It has not ended yet.`,
    );
    const btn = canAct ? el('button', { type: 'button', class: 'cancel danger', text: 'Cancel this run', on: { click: () => cancel(run) } }) : null;
    note.className = 'note note-warn';
    replace(note, text, btn);
    note.hidden = false;
  }

  function showAnswer(kind, text) {
    answer.className = `answer answer-${kind}`;
    setText(answer, text);
    answer.hidden = false;
    setText(announce, text);
  }

  // keepFocus: when the control that had the focus went away (the card or
  // the note it was in), the focus goes to the answer rather than the page.
  function keepFocus() {
    if (document.activeElement && document.activeElement !== document.body && document.activeElement.isConnected) {
      const hiddenParent = document.activeElement.closest('[hidden]');
      if (!hiddenParent) return;
    }
    answer.tabIndex = -1;
    if (!answer.hidden) answer.focus();
  }

  function busy(btn, on) {
    btn.setAttribute('aria-busy', String(on));
    btn.setAttribute('aria-disabled', String(on));
  }

  // --- actions ---------------------------------------------------------------
  async function cancel(run) {
    if (!run) return;
    const buttons = [...root.querySelectorAll('button.cancel')];
    if (buttons.some((b) => b.getAttribute('aria-busy') === 'true') || (run.cancel_requested && watcher.run?.run_id === run.run_id)) return;
    buttons.forEach((b) => busy(b, true));
    showAnswer('info', 'Cancelling…');
    let position;
    try {
      const res = await api.post(`${base}/runs/${encodeURIComponent(run.run_id)}/cancel`, {});
      historyView.note(res.body);
      position = res.body.position;
      if (res.status === 202) {
        Object.assign(asked, { runId: run.run_id, action: 'cancel', at: Date.parse(res.body.server_time) });
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
      buttons.forEach((b) => busy(b, false));
      if (current()) cancelBtn.setAttribute('aria-disabled', String(current().cancel_requested));
      keepFocus();
      historyView.reload(position);
    }
  }

  async function pauseOrResume() {
    const run = current();
    if (!run || pauseBtn.getAttribute('aria-busy') === 'true') return;
    const action = run.paused ? 'resume' : 'pause';
    busy(pauseBtn, true);
    try {
      const res = await api.post(`${base}/runs/${encodeURIComponent(run.run_id)}/${action}`, {});
      historyView.note(res.body);
      Object.assign(asked, { runId: run.run_id, action, at: Date.parse(res.body.server_time) });
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
      busy(pauseBtn, false);
      keepFocus();
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
