// openfeed.js — follows GET /v1/runs/open/stream, the operators' pushed list
// of open runs: each "open" event is the whole first page, longest silence
// first, with the server's time. fetch carries the token in a header; a
// dropped stream is reopened with jittered backoff. It costs the server no
// query while nothing changes, so an open console does not poll.

import { SSEParser, backoffDelay } from './watcher.js';

/**
 * openSnapshot validates an "open" event's data: {runs: [...], next_cursor,
 * server_time}. It returns the snapshot with serverMs (the server's time in
 * ms), or null when the data is not one.
 */
export function openSnapshot(data) {
  let body;
  try {
    body = JSON.parse(data);
  } catch {
    return null;
  }
  const serverMs = Date.parse(body?.server_time);
  if (!body || !Array.isArray(body.runs) || !Number.isFinite(serverMs)) return null;
  const runs = body.runs.filter((r) => r && typeof r.run_id === 'string' && typeof r.business_id === 'string' && Number.isFinite(Date.parse(r.last_heartbeat_at)));
  return { runs, nextCursor: body.next_cursor ?? null, serverMs };
}

/**
 * OpenRunsFeed follows the stream until stop(). Options: getToken,
 * onSnapshot(snapshot, monotonicMs) for each event, onStatus("connecting" |
 * "live" | "reconnecting"), onDenied(status) for 401/403 (it then stops),
 * limit, fetch, monotonic (default performance.now), random.
 */
export class OpenRunsFeed {
  #o;
  #stopped = true;
  #abort = null;
  #timer = null;
  #connected = false; // a snapshot has arrived since start()

  constructor(options) {
    this.#o = {
      limit: 100,
      fetch: (...a) => globalThis.fetch(...a),
      monotonic: () => performance.now(),
      random: Math.random,
      onStatus: () => {},
      onDenied: () => {},
      ...options,
    };
  }

  /** start opens the stream (once). */
  start() {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#loop(0);
  }

  /** stop aborts the stream and clears the retry timer. */
  stop() {
    this.#stopped = true;
    this.#abort?.abort();
    this.#abort = null;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #loop(attempt) {
    const o = this.#o;
    o.onStatus(this.#connected ? 'reconnecting' : 'connecting');
    const abort = new AbortController();
    this.#abort = abort;
    let got = false;
    try {
      const res = await o.fetch(`/v1/runs/open/stream?limit=${o.limit}`, {
        headers: { Accept: 'text/event-stream', Authorization: `Bearer ${o.getToken()}` },
        cache: 'no-store',
        credentials: 'omit',
        signal: abort.signal,
      });
      if (res.status === 401 || res.status === 403) {
        this.stop();
        o.onDenied(res.status);
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      const parser = new SSEParser();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.#stopped) break;
        for (const ev of parser.push(value)) {
          if (ev.event !== 'open') continue;
          const snap = openSnapshot(ev.data);
          if (!snap) continue;
          got = true;
          this.#connected = true;
          o.onStatus('live');
          o.onSnapshot(snap, o.monotonic());
        }
      }
    } catch {
      // a dropped connection, an aborted stop, an error answer: retry below
    }
    if (this.#stopped) return;
    const next = got ? 0 : attempt + 1;
    o.onStatus('reconnecting');
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#stopped) this.#loop(next);
    }, backoffDelay(next, { baseMs: 500, capMs: 15000 }, o.random));
  }
}
