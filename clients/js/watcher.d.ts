// Declarations of watcher.js, the page's watcher (api/web/static/assets/watcher.js).
// They are checked by `tsc --noEmit --strict` over test/consumer.ts in the tests.

/** Run is a run as the API sends it (the contract's run JSON). */
export interface Run {
  run_id: string;
  business_id: string;
  status: 'running' | 'completed' | 'failed' | 'cancelled';
  active: boolean;
  cancel_requested: boolean;
  total_calls: number;
  completed_calls: number;
  failed_calls: number;
  pending_calls: number;
  abandoned_calls?: number;
  worker_id: string;
  started_at: string;
  last_heartbeat_at: string;
  stale_at: string | null;
  ended_at?: string | null;
  end_reason?: 'completed' | 'worker_failed' | 'cancelled' | 'cancel_forced' | 'stale' | '' | null;
  last_error?: string | null;
  paused?: boolean;
  paused_at?: string | null;
  pause_reason?: string | null;
  stalled?: boolean;
  stalled_since?: string | null;
  last_progress_at?: string | null;
  stale_after?: string;
  stall_after?: string;
  version?: number;
  position?: number;
  server_time: string;
}

/** Tunables of the watcher, every one optional in WatcherOptions. */
export interface WatcherTunables {
  /** Origin of the API, '' for the page's own. */
  baseUrl: string;
  /** The longest a watch lasts (default 20 min); then "stopped" with reason "max_duration". */
  maxWatchMs: number;
  /** Consecutive failures before "lost" (default 5). */
  maxErrors: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** With no run to show, GET …/runs/active this often. */
  idlePollMs: number;
  /** While a run shows and streaming has failed, GET …/runs/active this often. */
  pollMs: number;
  streamFailuresBeforePolling: number;
  /** A stream silent for longer is dead. */
  streamIdleMs: number;
  /**
   * Follow the business rather than one run: GET …/runs/active/stream?wait=true
   * stays open while no run is active and pushes the start, so an idle watcher
   * costs one open connection and no request; polling (idlePollMs) is only the
   * fallback when streaming fails or the server lacks the option (default false).
   */
  waitForStart: boolean;
  /** With waitForStart, the longest a healthy stream is followed (default Infinity). */
  maxStreamWatchMs: number;
}

/** DEFAULTS are the watcher's tunables. */
export declare const DEFAULTS: Readonly<WatcherTunables>;

/** goDurationMs reads a Go duration string ("15m0s", "1.5s") in ms; NaN if it cannot. */
export declare function goDurationMs(text: unknown): number;

/** Never call a run silent sooner than this after its last heartbeat (ms). */
export declare const SILENT_FLOOR_MS: number;

/** A heartbeat the page saw: t = last_heartbeat_at in ms, done = completed + failed calls. */
export interface PaceSample {
  t: number;
  done: number;
}

/** heartbeatInterval is the median gap between the last heartbeats seen (ms), null with fewer than two. */
export declare function heartbeatInterval(samples: readonly PaceSample[]): number | null;

/** silentAfterMs is how long without a heartbeat makes run silent (ms). */
export declare function silentAfterMs(run: Run, samples: readonly PaceSample[]): number;

/** What may truthfully be said of a shown run's pace (see runPace in watcher.js). */
export interface RunPace {
  state: 'silent' | 'stopping' | 'paused' | 'stalled' | 'measuring' | 'working';
  silentMs: number;
  lastProgressMs: number | null;
  ratePerMin: number | null;
  etaMs: number | null;
}

/** runPace says what may be said of run's pace at the server time nowMs, from recent heartbeats only. */
export declare function runPace(run: Run, samples: readonly PaceSample[], nowMs: number, windowMs?: number): RunPace;

export type ValidateResult = { ok: true; run: Run } | { ok: false; error: string };

/** validateRun checks that value is a run of business (when given). */
export declare function validateRun(value: unknown, business?: string): ValidateResult;

export type BarVerdict = { show: true; msLeft: number } | { show: false; reason: 'ended' | 'not_active' | 'stale' };

/** barVerdict says whether a validated run may show as a bar at the server time serverNowMs. */
export declare function barVerdict(run: Run, serverNowMs: number): BarVerdict;

/** shouldShowBar: true only for a valid run of business that barVerdict lets show. */
export declare function shouldShowBar(message: unknown, serverNowMs: number, business?: string): boolean;

/** serverClockOffset: server_time minus the local reading at receipt, in ms (NaN if not a time). */
export declare function serverClockOffset(serverTime: string, localNowMs: number): number;

/** backoffDelay: the wait before retry number attempt, with equal jitter. */
export declare function backoffDelay(
  attempt: number,
  bounds?: { baseMs?: number; capMs?: number },
  random?: () => number,
): number;

export type AnswerKind = 'run' | 'none' | 'denied' | 'retry';

/** classifyAnswer maps an HTTP answer to what the watcher does next. */
export declare function classifyAnswer(status: number, code: string): AnswerKind;

export interface SSEEvent {
  event: string;
  data: string;
  id: string;
}

/** SSEParser turns chunks of a text/event-stream into events. */
export declare class SSEParser {
  push(text: string): SSEEvent[];
}

/** Why no bar shows ("inactive" events). */
export type InactiveReason = 'no_active_run' | 'not_active' | 'stale' | 'invalid';
/** Why the watcher stopped ("stopped" events). */
export type StopReason = 'stop' | 'max_duration' | 'pagehide' | 'unauthorized' | (string & {});

/** The connection's state, for a status line. */
export type ConnectionState = 'idle' | 'streaming' | 'polling' | 'reconnecting';
/** The watcher's state. */
export type WatcherState = ConnectionState | 'stopped' | 'lost';

/** The payload (event.detail) of each event of a Watcher. */
export interface WatcherEventMap {
  run: { run: Run; serverNow: number | null };
  ended: { run: Run };
  inactive: { reason: InactiveReason; run: Run | null };
  lost: { errors: number; error: string };
  stopped: { reason: StopReason; status?: number };
  connection: { state: ConnectionState; errors: number };
}

export type WatcherEventType = keyof WatcherEventMap;

export type WatcherCallbacks = { [K in WatcherEventType]?: (detail: WatcherEventMap[K]) => void };

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface WatcherOptions extends Partial<WatcherTunables> {
  /** The business whose active run to follow (required). */
  business: string;
  /** A bearer token (user role), or getToken to read it at each request. */
  token?: string;
  getToken?: () => string;
  /** Callbacks by event name. */
  on?: WatcherCallbacks;
  fetch?: FetchLike;
  /** A clock in ms that never jumps (default performance.now). */
  monotonic?: () => number;
  random?: () => number;
  /** The target of pagehide (default the window). */
  lifecycle?: EventTarget | null;
  /**
   * The log position every read must reflect (Runledger-Min-Position), or a
   * function returning it at each request: the highest Runledger-Position of
   * the page's own commands (cancel, pause), so the watcher reads its writes.
   * 0 or absent: no minimum. The watcher sends the larger of this and the
   * highest position it has been shown (session consistency) unless
   * eventualReads is true.
   */
  minPosition?: number | (() => number);
  /**
   * Every read reflects the highest log position the watcher was shown (a
   * run's position, an answer's), and minPosition; true turns the former off
   * (eventual reads: only minPosition is sent). Default false.
   */
  eventualReads?: boolean;
}

/** Watcher follows one business's active run; see watcher.js. */
export declare class Watcher extends EventTarget {
  constructor(options: WatcherOptions);
  /** The watcher's state. */
  readonly state: WatcherState;
  /** The run shown as a bar, or null when no bar may show. */
  readonly run: Run | null;
  /** The server's current time in ms since the epoch, or null before any message. */
  serverNow(): number | null;
  /** start begins (or, after a stop, restarts) watching. */
  start(): void;
  /** stop aborts the request in flight, clears every timer and emits "stopped" (once). */
  stop(reason?: string): void;
  addEventListener<K extends WatcherEventType>(
    type: K,
    listener: (event: CustomEvent<WatcherEventMap[K]>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends WatcherEventType>(
    type: K,
    listener: (event: CustomEvent<WatcherEventMap[K]>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
