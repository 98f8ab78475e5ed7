/**
 * watcher.js — follow one business's active run so that a progress bar can
 * never get stuck.
 *
 * A framework-free ES module with no dependencies and no build step: any page
 * can import it. It is the client half of the fix for runledger's founding
 * incident, a page that showed a progress bar forever because it trusted an
 * "active" answer, had no TTL of its own, never stopped polling and ignored
 * errors. So the watcher:
 *
 *  - follows GET {baseUrl}/v1/businesses/{b}/runs/active/stream through
 *    fetch (EventSource cannot send the Authorization header), resumes with
 *    Last-Event-ID, reconnects with jittered exponential backoff, and falls
 *    back to polling GET …/runs/active when streaming fails twice in a row;
 *  - while no run is active, asks GET …/runs/active every idlePollMs, so a
 *    run that starts shows within about that time; or, with waitForStart
 *    (the page's choice), holds GET …/runs/active/stream?wait=true open, a
 *    stream of the business that pushes the start and each run's end (also
 *    the end of a run that went silent), so an idle watch costs no request;
 *    polling is then the fallback when streaming fails, and maxWatchMs bounds
 *    only it (maxStreamWatchMs bounds the stream);
 *  - validates every message: anything but a well-formed run with
 *    status "running" and active true removes the bar at once;
 *  - keeps its own TTL: the bar goes when the run's stale_at passes, judged on
 *    the server's clock (stale_at − server_time of the message, counted down
 *    on the monotonic clock), so a browser clock hours off changes nothing
 *    and a silent server cannot keep a bar alive;
 *  - stops after maxWatchMs (default 20 min; the page then says "refresh to
 *    check again"), and after maxErrors consecutive failures reports "lost"
 *    instead of leaving a frozen bar;
 *  - leaves nothing behind: stop(), the end of the watch, "lost" and the
 *    page's pagehide event abort the request in flight and clear every timer.
 *
 * Usage:
 *
 *   import { Watcher } from './watcher.js';
 *   const w = new Watcher({ business: 'demo', token });
 *   w.addEventListener('run', (e) => showBar(e.detail.run));
 *   w.addEventListener('ended', (e) => hideBar(`ended: ${e.detail.run.status}`));
 *   for (const t of ['inactive', 'lost', 'stopped']) w.addEventListener(t, () => hideBar());
 *   w.start();
 *
 * or pass callbacks: new Watcher({ business, token, on: { run(detail) {…}, … } }).
 *
 * Events (CustomEvent; the payload is event.detail). A bar must show exactly
 * while the last of run / ended / inactive / lost / stopped was "run":
 *
 *   run        {run, serverNow}  an active run to show (again) as a bar
 *   ended      {run}             the run reached its terminal state (completed,
 *                                failed, cancelled); may follow an "inactive"
 *                                for the same run when the ending was learnt
 *                                after the bar had to go
 *   inactive   {reason, run}     no bar. reason: "no_active_run" (the server
 *                                has none), "not_active" (the server says the
 *                                run is not active), "stale" (stale_at passed
 *                                on the server's clock), "invalid" (a message
 *                                failed validation). run: the last run known,
 *                                or null. Sent on every change from a bar to
 *                                no bar, and once after start() when there is
 *                                no bar to show.
 *   lost       {errors, error}   maxErrors consecutive failures; the watcher
 *                                has stopped (show "lost contact")
 *   stopped    {reason}          the watcher has stopped: "stop" (stop()),
 *                                "max_duration", "pagehide", "unauthorized"
 *                                (401, 403, or 404 not_found: the token cannot
 *                                see the business)
 *   connection {state, errors}   "idle" (no run; checking now and then),
 *                                "streaming", "polling", "reconnecting": for a
 *                                status line only
 *
 * The decisions are pure functions, exported and unit-tested with
 * `node --test`: validateRun, barVerdict / shouldShowBar, serverClockOffset,
 * backoffDelay, classifyAnswer, SSEParser, and what the page may say of a
 * run's pace: goDurationMs, heartbeatInterval, silentAfterMs, runPace.
 */

/** DEFAULTS are the watcher's tunables; every one can be given to new Watcher. */
export const DEFAULTS = Object.freeze({
  baseUrl: '',
  maxWatchMs: 20 * 60 * 1000,
  maxErrors: 5,
  backoffBaseMs: 250,
  backoffCapMs: 4000,
  // With no run to show, GET …/runs/active this often, so that a run that
  // starts shows within a second: a primary-key read of a small table, for
  // at most maxWatchMs per open page.
  idlePollMs: 500,
  // While a run shows and streaming has failed, GET …/runs/active this often.
  pollMs: 1000,
  streamFailuresBeforePolling: 2,
  // The server sends a keep-alive comment every 15 s; a stream quiet for
  // longer than this is dead even if the connection looks open.
  streamIdleMs: 40 * 1000,
  // Follow the business rather than one run: GET …/runs/active/stream?wait=true
  // stays open while no run is active and pushes the start, so an idle page
  // costs one open connection and no request. Polling (idlePollMs) is then
  // only the fallback when streaming fails, or when the server does not
  // offer the option (its stream answers 404 no_active_run).
  waitForStart: false,
  // With waitForStart, maxWatchMs bounds the time spent polling (the
  // fallback); a healthy stream is bounded by this instead (none by default).
  maxStreamWatchMs: Infinity,
});

const STATUSES = new Set(['running', 'completed', 'failed', 'cancelled']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * validateRun checks that value is a run as the API sends it (the contract's
 * run JSON) and, when business is given, that it belongs to that business.
 * It returns {ok: true, run} or {ok: false, error} naming the first problem.
 */
export function validateRun(value, business) {
  const bad = (error) => ({ ok: false, error });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('not an object');
  const v = value;
  if (typeof v.run_id !== 'string' || !UUID.test(v.run_id)) return bad('run_id: not a UUID');
  if (typeof v.business_id !== 'string' || v.business_id === '') return bad('business_id: missing');
  if (business !== undefined && v.business_id !== business) return bad(`business_id: ${v.business_id} is not ${business}`);
  if (!STATUSES.has(v.status)) return bad('status: unknown');
  for (const k of ['active', 'cancel_requested']) {
    if (typeof v[k] !== 'boolean') return bad(`${k}: not a boolean`);
  }
  for (const k of ['total_calls', 'completed_calls', 'failed_calls', 'pending_calls']) {
    if (!Number.isSafeInteger(v[k]) || v[k] < 0) return bad(`${k}: not a count`);
  }
  if (v.completed_calls + v.failed_calls > v.total_calls) return bad('completed_calls + failed_calls exceed total_calls');
  if (v.pending_calls !== v.total_calls - v.completed_calls - v.failed_calls) return bad('pending_calls: does not add up');
  if (typeof v.worker_id !== 'string') return bad('worker_id: not a string');
  for (const k of ['started_at', 'last_heartbeat_at', 'server_time']) {
    if (!isTime(v[k])) return bad(`${k}: not a time`);
  }
  if (v.status === 'running') {
    if (!isTime(v.stale_at)) return bad('stale_at: not a time on a running run');
  } else if (v.stale_at != null && !isTime(v.stale_at)) {
    return bad('stale_at: not a time');
  }
  for (const k of ['ended_at', 'paused_at', 'stalled_since']) {
    if (v[k] != null && !isTime(v[k])) return bad(`${k}: not a time`);
  }
  for (const k of ['end_reason', 'last_error', 'pause_reason']) {
    if (v[k] != null && typeof v[k] !== 'string') return bad(`${k}: not a string`);
  }
  for (const k of ['paused', 'stalled']) {
    if (v[k] !== undefined && typeof v[k] !== 'boolean') return bad(`${k}: not a boolean`);
  }
  return { ok: true, run: v };
}

function isTime(s) {
  return typeof s === 'string' && !Number.isNaN(Date.parse(s));
}

/**
 * barVerdict says whether a run (already validated) may show as a bar at the
 * server time serverNowMs (milliseconds since the epoch on the server's
 * clock). It returns {show: true, msLeft} while the run is running, active and
 * short of its stale_at, else {show: false, reason} with reason "ended",
 * "not_active" or "stale".
 */
export function barVerdict(run, serverNowMs) {
  if (run.status !== 'running') return { show: false, reason: 'ended' };
  if (run.active !== true) return { show: false, reason: 'not_active' };
  const staleAt = Date.parse(run.stale_at);
  if (!(serverNowMs < staleAt)) return { show: false, reason: 'stale' };
  return { show: true, msLeft: staleAt - serverNowMs };
}

/**
 * shouldShowBar is the whole rule for any message: true only for a valid run
 * of the business (when given) that barVerdict lets show at serverNowMs.
 */
export function shouldShowBar(message, serverNowMs, business) {
  const v = validateRun(message, business);
  return v.ok && barVerdict(v.run, serverNowMs).show;
}

/**
 * goDurationMs reads a Go duration string as the API sends it ("15m0s",
 * "1h0m0s", "1.5s", "250ms") in milliseconds; NaN if it cannot.
 */
export function goDurationMs(text) {
  const t = String(text ?? '');
  const unit = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60e3, h: 3600e3 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * unit[m[2]];
    end = re.lastIndex;
  }
  return t === '0s' ? 0 : end > 0 && end === t.length ? total : NaN;
}

/** SILENT_FLOOR_MS: never call a run silent sooner than this after its last heartbeat. */
export const SILENT_FLOOR_MS = 2000;

/**
 * heartbeatInterval is the run's own pace: the median gap between the
 * heartbeats the page saw (samples: [{t, done}], t = last_heartbeat_at in
 * ms), from the last 10; null with fewer than two.
 */
export function heartbeatInterval(samples) {
  const ts = [...new Set(samples.map((p) => p.t))].filter(Number.isFinite).sort((a, b) => a - b).slice(-11);
  if (ts.length < 2) return null;
  const gaps = ts.slice(1).map((t, i) => t - ts[i]).sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

/**
 * silentAfterMs is how long without a heartbeat makes run silent: three of
 * its own heartbeat intervals (at least SILENT_FLOOR_MS); before the page has
 * seen two heartbeats, a fifth of its TTL (the server stores a heartbeat at
 * least every tenth of it).
 */
export function silentAfterMs(run, samples) {
  const every = heartbeatInterval(samples);
  if (every !== null) return Math.max(SILENT_FLOOR_MS, 3 * every);
  const ttl = goDurationMs(run.stale_after);
  return Math.max(SILENT_FLOOR_MS, Number.isFinite(ttl) ? ttl / 5 : 60e3);
}

/**
 * runPace says what may truthfully be said of a shown run's pace at the
 * server time nowMs. It returns {state, silentMs, lastProgressMs, ratePerMin,
 * etaMs}: state "silent" (no heartbeat for silentAfterMs), "stopping" (cancel
 * requested), "paused", "stalled" (heartbeats without progress: the server's
 * flag; lastProgressMs is its last progress), "measuring" (fewer than two
 * heartbeats with progress in the last 5 minutes) or "working". samples are
 * heartbeats only: a start is no measure of pace (a start, then a heartbeat
 * 1 ms later that reports 18 calls, is not 1 million calls a minute). ratePerMin and
 * etaMs are numbers only when working (etaMs 0 once nothing is pending):
 * measured over recent heartbeats only (the last 10 within 5 minutes), never
 * since the start.
 */
export function runPace(run, samples, nowMs, windowMs = 5 * 60e3) {
  const last = Date.parse(run.last_heartbeat_at);
  const silentMs = Math.max(0, nowMs - last);
  let lastProgressMs = Date.parse(run.last_progress_at);
  if (!Number.isFinite(lastProgressMs) && run.stalled_since) lastProgressMs = Date.parse(run.stalled_since) - goDurationMs(run.stall_after);
  const out = { state: 'working', silentMs, lastProgressMs: Number.isFinite(lastProgressMs) ? lastProgressMs : null, ratePerMin: null, etaMs: null };
  if (silentMs > silentAfterMs(run, samples)) return { ...out, state: 'silent' };
  if (run.cancel_requested) return { ...out, state: 'stopping' };
  if (run.paused === true) return { ...out, state: 'paused' };
  if (run.stalled === true) return { ...out, state: 'stalled' };
  const done = run.completed_calls + run.failed_calls;
  const pending = run.total_calls - done;
  const points = [...samples, { t: last, done }]
    .filter((p) => Number.isFinite(p.t) && p.t <= last && p.t >= last - windowMs)
    .sort((a, b) => a.t - b.t)
    .slice(-11);
  const first = points[0];
  if (!first || last <= first.t || done <= first.done) return { ...out, state: pending === 0 ? 'working' : 'measuring', etaMs: pending === 0 ? 0 : null };
  const ratePerMin = ((done - first.done) / (last - first.t)) * 60e3;
  return { ...out, ratePerMin, etaMs: pending === 0 ? 0 : (pending / ratePerMin) * 60e3 };
}

/**
 * serverClockOffset returns how far the server's clock is ahead of a local
 * clock, in milliseconds: the server_time of a message minus the local
 * clock's reading when it arrived. Local reading + offset is then the
 * server's time. NaN if serverTime is not a time.
 */
export function serverClockOffset(serverTime, localNowMs) {
  return Date.parse(serverTime) - localNowMs;
}

/**
 * backoffDelay returns the wait before retry number attempt (0 for the first
 * retry): exponential from baseMs, capped at capMs, with "equal jitter" (half
 * fixed, half random from random(), which returns [0, 1)) so that many pages
 * do not reconnect in step.
 */
export function backoffDelay(attempt, { baseMs = DEFAULTS.backoffBaseMs, capMs = DEFAULTS.backoffCapMs } = {}, random = Math.random) {
  const d = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return d / 2 + random() * (d / 2);
}

/**
 * classifyAnswer maps an HTTP answer to what the watcher does next: "run"
 * (200: validate the body), "none" (404 no_active_run), "denied" (401, 403,
 * 404 not_found: this token will never see the business), or "retry"
 * (anything else: 5xx, 503 read_model_behind, a proxy's error page).
 */
export function classifyAnswer(status, code) {
  if (status === 200) return 'run';
  if (status === 404 && code === 'no_active_run') return 'none';
  if (status === 401 || status === 403 || (status === 404 && code === 'not_found')) return 'denied';
  return 'retry';
}

/**
 * SSEParser turns chunks of a text/event-stream into events, as the HTML
 * standard's parser does: push(text) returns the events completed by text,
 * each {event, data, id} (event defaults to "message"; id is the last event
 * id seen so far). Comments are dropped.
 */
export class SSEParser {
  #buf = '';
  #first = true;
  #event = '';
  #data = [];
  #id = '';

  push(text) {
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.#buf += text;
    const out = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.#buf);
      if (!m) break;
      // A CR at the end may be the first half of a CRLF: wait for more.
      if (m[0] === '\r' && m.index === this.#buf.length - 1) break;
      const line = this.#buf.slice(0, m.index);
      this.#buf = this.#buf.slice(m.index + m[0].length);
      const ev = this.#line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  #line(line) {
    if (line === '') {
      if (this.#data.length === 0) {
        this.#event = '';
        return null;
      }
      const ev = { event: this.#event || 'message', data: this.#data.join('\n'), id: this.#id };
      this.#event = '';
      this.#data = [];
      return ev;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.#id = value;
    return null;
  }
}

/**
 * Watcher follows one business's active run; see the top of this file.
 * Options: business (required), token (string) or getToken (function), on
 * (callbacks by event name), minPosition and eventualReads (see #send), fetch, monotonic (a clock in ms that never jumps;
 * default performance.now), random, lifecycle (the target of pagehide;
 * default globalThis when it is a window), and every key of DEFAULTS.
 */
export class Watcher extends EventTarget {
  #o;
  #fetch;
  #mono;
  #random;
  #lifecycle;
  #running = false;
  #state = 'stopped';
  #gen = 0; // bumped on every step change: stale continuations see it and stop
  #request = null; // the AbortController of the request in flight
  #timers = new Set(); // every timer id this watcher has set and not yet seen fire
  #stepTimer = null;
  #ttlTimer = null;
  #idleTimer = null;
  #errors = 0;
  #streamFailures = 0;
  #current = null; // the run shown as a bar, or null
  #lastRun = null; // the last run seen, for inactive's detail
  #announced = false; // whether a no-bar verdict has been sent since start()
  #lastEventId = '';
  #offset = null; // server clock − monotonic clock, in ms
  #waitUnsupported = false; // the server answered ?wait=true with 404 no_active_run
  #waitStreaming = false; // a ?wait=true stream is open
  #overdue = false; // maxWatchMs has passed while streaming: the next poll stops
  #seenPosition = 0; // the highest log position an answer has shown this watcher (kept across restarts)
  #onPageHide = () => this.stop('pagehide');

  constructor(options = {}) {
    super();
    if (typeof options.business !== 'string' || options.business === '') throw new TypeError('Watcher: business is required');
    if (typeof options.token !== 'string' && typeof options.getToken !== 'function') throw new TypeError('Watcher: token or getToken is required');
    this.#o = { ...DEFAULTS, ...options };
    this.#fetch = options.fetch ?? ((...a) => globalThis.fetch(...a));
    this.#mono = options.monotonic ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    this.#lifecycle = options.lifecycle ?? (typeof window !== 'undefined' && globalThis === window ? window : null);
    for (const [type, fn] of Object.entries(options.on ?? {})) {
      this.addEventListener(type, (e) => fn(e.detail));
    }
  }

  /** state is "idle", "streaming", "polling", "reconnecting", "stopped" or "lost". */
  get state() {
    return this.#state;
  }

  /** run is the run shown as a bar, or null when no bar may show. */
  get run() {
    return this.#current;
  }

  /**
   * serverNow returns the server's current time in ms since the epoch,
   * estimated from the last message's server_time, or null before any.
   */
  serverNow() {
    return this.#offset === null ? null : this.#mono() + this.#offset;
  }

  /** start begins (or, after a stop, restarts) watching. */
  start() {
    if (this.#running) return;
    this.#running = true;
    this.#errors = 0;
    this.#streamFailures = 0;
    this.#announced = false;
    this.#lastEventId = '';
    this.#overdue = false;
    this.#setTimer(this.#o.maxWatchMs, () => {
      if (this.#o.waitForStart && this.#waitStreaming) this.#overdue = true;
      else this.#halt('stopped', 'stopped', { reason: 'max_duration' });
    });
    if (this.#o.waitForStart && Number.isFinite(this.#o.maxStreamWatchMs)) {
      this.#setTimer(this.#o.maxStreamWatchMs, () => this.#halt('stopped', 'stopped', { reason: 'max_duration' }));
    }
    this.#lifecycle?.addEventListener('pagehide', this.#onPageHide);
    this.#step(0, (gen) => this.#check(gen));
  }

  /** stop aborts the request in flight, clears every timer and emits "stopped" (once). */
  stop(reason = 'stop') {
    if (this.#running) this.#halt('stopped', 'stopped', { reason });
  }

  // --- steps -------------------------------------------------------------

  /** #check asks whether the business has an active run (no bar shows, or it must be confirmed). */
  async #check(gen) {
    if (this.#waitMode()) return this.#stream(gen, true);
    if (this.#overdue) return this.#halt('stopped', 'stopped', { reason: 'max_duration' });
    this.#connection(this.#errors > 0 ? 'reconnecting' : 'idle');
    const ans = await this.#getJSON(gen, '/runs/active');
    if (!ans) return;
    if (ans.error) {
      this.#failed(ans.error, (g) => this.#check(g));
      return;
    }
    switch (classifyAnswer(ans.status, ans.code)) {
      case 'run':
        if (!this.#accept(ans.body)) return;
        this.#errors = 0;
        this.#step(0, (g) => (this.#streamFailures >= this.#o.streamFailuresBeforePolling ? this.#poll(g) : this.#stream(g)));
        return;
      case 'none':
        this.#errors = 0;
        this.#noBar('no_active_run', this.#current ?? this.#lastRun);
        this.#step(this.#o.idlePollMs, (g) => this.#check(g));
        return;
      case 'denied':
        this.#halt('stopped', 'stopped', { reason: 'unauthorized', status: ans.status });
        return;
      default:
        this.#failed(new Error(`GET runs/active answered ${ans.status}`), (g) => this.#check(g));
    }
  }

  /** #poll follows a shown run by GET …/runs/active when streaming fails. */
  async #poll(gen) {
    if (this.#overdue) return this.#halt('stopped', 'stopped', { reason: 'max_duration' });
    this.#connection(this.#errors > 0 ? 'reconnecting' : 'polling');
    const ans = await this.#getJSON(gen, '/runs/active');
    if (!ans) return;
    if (ans.error) {
      this.#failed(ans.error, (g) => this.#poll(g));
      return;
    }
    switch (classifyAnswer(ans.status, ans.code)) {
      case 'run':
        if (!this.#accept(ans.body)) return;
        this.#errors = 0;
        this.#step(this.#o.pollMs, (g) => this.#poll(g));
        return;
      case 'none':
        this.#errors = 0;
        this.#settle(gen);
        return;
      case 'denied':
        this.#halt('stopped', 'stopped', { reason: 'unauthorized', status: ans.status });
        return;
      default:
        this.#failed(new Error(`GET runs/active answered ${ans.status}`), (g) => this.#poll(g));
    }
  }

  /** #stream follows a shown run through the SSE stream until it ends, goes inactive, or fails. */
  async #stream(gen, wait = false) {
    this.#connection(this.#errors > 0 ? 'reconnecting' : wait && !this.#current ? 'idle' : 'streaming');
    const headers = { Accept: 'text/event-stream' };
    if (this.#lastEventId) headers['Last-Event-ID'] = this.#lastEventId;
    let res;
    try {
      res = await this.#send(wait ? '/runs/active/stream?wait=true' : '/runs/active/stream', headers);
    } catch (err) {
      if (gen === this.#gen) this.#streamFailed(err);
      return;
    }
    if (gen !== this.#gen) return;
    const type = res.headers.get('Content-Type') ?? '';
    if (res.status !== 200 || !type.startsWith('text/event-stream')) {
      const code = await problemCode(res);
      if (gen !== this.#gen) return;
      const kind = classifyAnswer(res.status, code);
      if (kind === 'none' && wait) {
        this.#waitUnsupported = true; // an older server: it ignores ?wait=true
        this.#step(0, (g) => this.#check(g));
      } else if (kind === 'none') this.#settle(gen);
      else if (kind === 'denied') this.#halt('stopped', 'stopped', { reason: 'unauthorized', status: res.status });
      else this.#streamFailed(new Error(`the stream answered ${res.status} ${type}`));
      return;
    }
    this.#errors = 0; // contact: a stream that then closes at once is bounded by streamFailures
    this.#waitStreaming = wait;
    this.#connection(wait && !this.#current ? 'idle' : 'streaming');
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SSEParser();
    this.#armStreamIdle(gen);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (gen !== this.#gen) return;
        if (done) break;
        this.#armStreamIdle(gen);
        for (const ev of parser.push(decoder.decode(value, { stream: true }))) {
          if (!(wait ? this.#onWaitEvent(ev) : this.#onStreamEvent(ev))) return;
        }
      }
    } catch (err) {
      if (gen === this.#gen) this.#streamFailed(err);
      return;
    }
    this.#streamFailed(new Error('the stream closed before the run ended'));
  }

  /** #waitMode: follow the business with ?wait=true (the option is on, offered, and streaming works). */
  #waitMode() {
    return this.#o.waitForStart && !this.#waitUnsupported && this.#streamFailures < this.#o.streamFailuresBeforePolling;
  }

  /**
   * #onWaitEvent handles one event of a ?wait=true stream, which outlives
   * runs: "waiting" (no active run; data {server_time, run}: the open run
   * that is silent, or null), then per run "run"…, "inactive" (silent) and
   * "ended" (also for a silent run the reaper ends). False when the stream
   * is done with.
   */
  #onWaitEvent(ev) {
    let body;
    try {
      body = JSON.parse(ev.data);
    } catch {
      this.#invalid(new Error(`stream event ${ev.event}: data is not JSON`));
      return false;
    }
    if (ev.event === 'waiting') {
      if (body === null || typeof body !== 'object' || !isTime(body.server_time)) {
        this.#invalid(new Error('stream event waiting: no server_time'));
        return false;
      }
      this.#offset = serverClockOffset(body.server_time, this.#mono());
      this.#notePosition(body.position);
      let run = null;
      if (body.run != null) {
        const v = validateRun(body.run, this.#o.business);
        if (!v.ok) {
          this.#invalid(new Error(`stream event waiting: ${v.error}`));
          return false;
        }
        run = v.run;
        this.#note(run);
      }
      this.#noBar(run ? 'not_active' : 'no_active_run', run);
      this.#connection('idle');
      this.#streamFailures = 0;
      return true;
    }
    if (ev.event === 'ended' || ev.event === 'inactive') {
      const v = validateRun(body, this.#o.business);
      if (!v.ok) {
        this.#invalid(new Error(`stream event ${ev.event}: ${v.error}`));
        return false;
      }
      this.#note(v.run);
      if (ev.id) this.#lastEventId = ev.id;
      if (v.run.status !== 'running') this.#ended(v.run);
      else this.#noBar('not_active', v.run);
      this.#connection('idle');
      return true;
    }
    const shown = this.#accept(body, true);
    if (shown === null) return false;
    if (ev.id) this.#lastEventId = ev.id;
    this.#streamFailures = 0;
    if (shown) this.#connection('streaming');
    return true;
  }

  /** #onStreamEvent handles one SSE event; false when the stream is done with. */
  #onStreamEvent(ev) {
    let body;
    try {
      body = JSON.parse(ev.data);
    } catch {
      this.#invalid(new Error(`stream event ${ev.event}: data is not JSON`));
      return false;
    }
    if (ev.event === 'ended' || ev.event === 'inactive') {
      // Terminal events end the bar whatever their data says.
      const v = validateRun(body, this.#o.business);
      if (!v.ok) {
        this.#invalid(new Error(`stream event ${ev.event}: ${v.error}`));
      } else {
        this.#note(v.run);
        if (v.run.status !== 'running') this.#ended(v.run);
        else this.#noBar('not_active', v.run);
        this.#errors = 0;
        this.#step(this.#o.idlePollMs, (g) => this.#check(g));
      }
      return false;
    }
    if (!this.#accept(body)) return false;
    if (ev.id) this.#lastEventId = ev.id;
    this.#streamFailures = 0;
    return true;
  }

  /**
   * #accept validates an answer that should be a run and shows it, or ends
   * the bar and schedules the next check. It returns true when a bar shows.
   */
  #accept(body, keepStream = false) {
    const v = validateRun(body, this.#o.business);
    if (!v.ok) {
      this.#invalid(new Error(`invalid run: ${v.error}`));
      return keepStream ? null : false;
    }
    const run = v.run;
    this.#note(run);
    // At receipt the server's clock reads server_time, by definition.
    const verdict = barVerdict(run, Date.parse(run.server_time));
    if (verdict.show) {
      this.#show(run, verdict.msLeft);
      return true;
    }
    if (verdict.reason === 'ended') this.#ended(run);
    else this.#noBar(verdict.reason, run);
    this.#errors = 0;
    if (!keepStream) this.#step(this.#o.idlePollMs, (g) => this.#check(g));
    return false;
  }

  /** #settle hides the bar of a run the server no longer calls active, then tries to learn how it ended. */
  async #settle(gen) {
    const run = this.#current ?? this.#lastRun;
    this.#noBar('no_active_run', run);
    if (run && run.status === 'running') {
      // Best effort: the bar is gone already; a failure here is not counted.
      const ans = await this.#getJSON(gen, `/runs/${encodeURIComponent(run.run_id)}`);
      if (!ans) return;
      if (ans.status === 200) {
        const v = validateRun(ans.body, this.#o.business);
        if (v.ok && v.run.run_id === run.run_id && v.run.status !== 'running') {
          this.#note(v.run);
          this.#ended(v.run);
        }
      }
    }
    if (gen === this.#gen) this.#step(this.#o.idlePollMs, (g) => this.#check(g));
  }

  // --- outcomes ------------------------------------------------------------

  /** #notePosition remembers p when it is a log position higher than any shown before. */
  #notePosition(p) {
    if (Number.isSafeInteger(p) && p > this.#seenPosition) this.#seenPosition = p;
  }

  #note(run) {
    this.#notePosition(run.position);
    this.#offset = serverClockOffset(run.server_time, this.#mono());
    if (this.#lastRun?.run_id !== run.run_id) {
      this.#lastEventId = '';
      this.#streamFailures = 0;
    }
    this.#lastRun = run;
  }

  #show(run, msLeft) {
    this.#clearTimer(this.#ttlTimer);
    this.#ttlTimer = this.#setTimer(msLeft, () => {
      // Our own TTL: nothing confirmed the run alive before its stale_at.
      this.#noBar('stale', this.#current ?? run);
      // A business stream goes on (the server says "inactive", then how the run ends).
      if (!this.#waitStreaming) this.#step(this.#o.idlePollMs, (g) => this.#check(g));
    });
    this.#current = run;
    this.#announced = true;
    this.#emit('run', { run, serverNow: this.serverNow() });
  }

  #ended(run) {
    this.#clearTimer(this.#ttlTimer);
    this.#current = null;
    this.#announced = true;
    this.#connection('idle');
    this.#emit('ended', { run });
  }

  #noBar(reason, run) {
    this.#clearTimer(this.#ttlTimer);
    const had = this.#current !== null;
    this.#current = null;
    if (had) this.#connection('idle');
    if (had || !this.#announced) {
      this.#announced = true;
      this.#emit('inactive', { reason, run: run ?? null });
    }
  }

  /** #invalid: a message failed validation. The bar goes at once, and it counts as an error. */
  #invalid(err) {
    this.#noBar('invalid', this.#lastRun);
    this.#failed(err, (g) => this.#check(g));
  }

  #streamFailed(err) {
    this.#streamFailures++;
    const polling = this.#streamFailures >= this.#o.streamFailuresBeforePolling;
    const next = polling ? (g) => this.#poll(g) : (g) => this.#stream(g);
    const check = (g) => this.#check(g);
    this.#failed(err, this.#current && (polling || !this.#o.waitForStart) ? next : check);
  }

  #failed(err, retry) {
    this.#errors++;
    if (this.#errors >= this.#o.maxErrors) {
      this.#halt('lost', 'lost', { errors: this.#errors, error: String(err?.message ?? err) });
      return;
    }
    this.#connection('reconnecting');
    const delay = backoffDelay(this.#errors - 1, { baseMs: this.#o.backoffBaseMs, capMs: this.#o.backoffCapMs }, this.#random);
    this.#step(delay, retry);
  }

  /** #halt ends the watch: no request, no timer, no listener, no bar; then one event. */
  #halt(state, type, detail) {
    this.#running = false;
    this.#waitStreaming = false;
    this.#gen++;
    this.#abort();
    for (const id of this.#timers) clearTimeout(id);
    this.#timers.clear();
    this.#stepTimer = this.#ttlTimer = this.#idleTimer = null;
    this.#lifecycle?.removeEventListener('pagehide', this.#onPageHide);
    this.#current = null;
    this.#state = state;
    this.#emit(type, detail);
  }

  // --- plumbing ------------------------------------------------------------

  /** #step abandons what the watcher was doing (request, step timer) and runs fn(gen) after ms. */
  #step(ms, fn) {
    if (!this.#running) return;
    const gen = ++this.#gen;
    this.#waitStreaming = false;
    this.#abort();
    this.#clearTimer(this.#stepTimer);
    this.#clearTimer(this.#idleTimer);
    this.#stepTimer = this.#setTimer(ms, () => {
      if (gen === this.#gen && this.#running) fn(gen);
    });
  }

  #armStreamIdle(gen) {
    this.#clearTimer(this.#idleTimer);
    this.#idleTimer = this.#setTimer(this.#o.streamIdleMs, () => {
      if (gen === this.#gen) this.#streamFailed(new Error(`the stream was silent for ${this.#o.streamIdleMs} ms`));
    });
  }

  #setTimer(ms, fn) {
    const id = setTimeout(() => {
      this.#timers.delete(id);
      fn();
    }, Math.max(0, ms));
    this.#timers.add(id);
    return id;
  }

  #clearTimer(id) {
    if (id === null || id === undefined) return;
    clearTimeout(id);
    this.#timers.delete(id);
  }

  #abort() {
    if (this.#request) {
      this.#request.abort();
      this.#request = null;
    }
  }

  /** #send starts a GET of the business's path with the token; one request at a time. */
  #send(path, headers = {}) {
    this.#abort();
    const ctl = new AbortController();
    this.#request = ctl;
    const token = this.#o.getToken ? this.#o.getToken() : this.#o.token;
    const url = `${this.#o.baseUrl}/v1/businesses/${encodeURIComponent(this.#o.business)}${path}`;
    // Read-your-writes: options.minPosition (a number, or a function read at
    // each request) is the highest Runledger-Position of the page's own
    // commands; the server answers only once its read model reflects it.
    // Session consistency: the watcher also sends the highest position it
    // has been shown (a run's position, an answer's), so a read served by a
    // read model behind never shows an older state than one already shown;
    // eventualReads: true sends the caller's minPosition only.
    const given = typeof this.#o.minPosition === 'function' ? this.#o.minPosition() : this.#o.minPosition;
    const min = Math.max(Number.isSafeInteger(given) ? given : 0, this.#o.eventualReads ? 0 : this.#seenPosition);
    if (min > 0) headers = { ...headers, 'Runledger-Min-Position': String(min) };
    return this.#fetch(url, {
      method: 'GET',
      headers: { ...headers, Authorization: `Bearer ${token}` },
      cache: 'no-store',
      credentials: 'omit',
      signal: ctl.signal,
    });
  }

  /**
   * #getJSON GETs path and reads the whole answer: {status, code, body}; on a
   * network failure or a body that is not JSON, {error}; null when the step
   * was abandoned meanwhile.
   */
  async #getJSON(gen, path) {
    try {
      const res = await this.#send(path);
      const body = await res.json();
      if (gen !== this.#gen) return null;
      this.#request = null;
      this.#notePosition(body?.position);
      return { status: res.status, code: typeof body?.code === 'string' ? body.code : '', body };
    } catch (error) {
      return gen === this.#gen ? { error } : null;
    }
  }

  #connection(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.#emit('connection', { state, errors: this.#errors });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

async function problemCode(res) {
  try {
    const body = await res.json();
    return typeof body?.code === 'string' ? body.code : '';
  } catch {
    return '';
  }
}
