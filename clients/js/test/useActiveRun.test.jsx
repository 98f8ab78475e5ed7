// useActiveRun against a fake stream: the bar appears, follows progress,
// disappears on end and at the TTL (whatever the browser's clock says),
// the watch stops at its maximum duration, and unmounting leaves nothing.
import { act, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useActiveRun } from '../react.js';
import { BUSINESS, TTL_MS, fakeServer } from './fake.js';

const T0 = Date.parse('2026-11-30T03:00:00Z');
const HOUR = 60 * 60 * 1000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
  vi.setSystemTime(T0);
});

afterEach(() => {
  vi.useRealTimers();
});

/** advance runs the fake timers ms forward, letting fetches and React settle. */
async function advance(ms) {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

function mount(server, options = {}) {
  return renderHook(({ business }) => useActiveRun(business, { token: 'user-token', fetch: server.fetch, ...options }), {
    initialProps: { business: BUSINESS },
  });
}

describe('useActiveRun', () => {
  it('appears, follows progress and disappears on end', async () => {
    const server = fakeServer();
    const { result } = mount(server);
    await advance(10);
    expect(result.current.run).toBeNull();
    expect(result.current.reason).toBe('no_active_run');

    server.start(10);
    await advance(600); // the next idle check finds it
    expect(result.current.run?.run_id).toBe(server.run.run_id);
    expect(result.current.reason).toBeNull();
    expect(result.current.connection).toBe('streaming');
    expect(server.calls.at(-1).headers.Authorization).toBe('Bearer user-token');

    for (const done of [3, 7]) {
      server.heartbeat(done);
      await advance(10);
      expect(result.current.run?.completed_calls).toBe(done);
    }

    server.end('completed');
    await advance(10);
    expect(result.current.run).toBeNull();
    expect(result.current.reason).toBe('ended');
    expect(result.current.lastRun?.status).toBe('completed');
  });

  for (const skew of [HOUR, -HOUR]) {
    it(`disappears at the TTL with the browser's clock ${skew > 0 ? 'an hour ahead' : 'an hour behind'}`, async () => {
      const server = fakeServer({ skewMs: skew });
      vi.setSystemTime(T0 + skew); // the browser's clock; the server's reads T0
      server.start(10);
      const { result } = mount(server, { streamIdleMs: 10 * HOUR });
      await advance(10);
      // An hour ahead, a bar judged on the browser's clock would never show.
      expect(result.current.run?.run_id).toBe(server.run.run_id);
      // The worker goes silent: nothing more comes. An hour behind, a bar
      // judged on the browser's clock would stay an hour past stale_at.
      await advance(TTL_MS - 1000);
      expect(result.current.run).not.toBeNull();
      await advance(2000);
      expect(result.current.run).toBeNull();
      expect(result.current.reason).toBe('stale');
    });
  }

  it('costs no request while idle: one stream waits for the start, which shows at once', async () => {
    const server = fakeServer({ wait: true });
    const { result } = mount(server, { streamIdleMs: 10 * HOUR }); // the fake sends no keep-alive
    await advance(10);
    expect(result.current.run).toBeNull();
    expect(result.current.reason).toBe('no_active_run');
    await advance(30 * 60 * 1000); // half an hour idle: past the 20 min a polling watch lasts
    expect(server.calls.map((c) => c.url)).toEqual([`/v1/businesses/${BUSINESS}/runs/active/stream?wait=true`]);
    expect(server.openStreams()).toHaveLength(1);

    server.start(10);
    await advance(10);
    expect(result.current.run?.run_id).toBe(server.run.run_id);
    server.end('completed');
    await advance(10);
    expect(result.current.reason).toBe('ended');
    expect(server.calls).toHaveLength(1);
  });

  it('stops after the maximum watch when polling', async () => {
    const server = fakeServer({ streamStatus: 500 });
    server.start(1000);
    const maxWatchMs = 60_000;
    const { result } = mount(server, { maxWatchMs, pollMs: 1000, backoffBaseMs: 10, backoffCapMs: 20 });
    await advance(1100); // two stream failures, then a poll that succeeds and the next one
    expect(result.current.run).not.toBeNull();
    expect(result.current.connection).toBe('polling');
    let done = 0;
    while (Date.now() < T0 + maxWatchMs - 2000) {
      server.heartbeat(++done); // the run stays alive: only the watch's own limit can end it
      await advance(1000);
      expect(result.current.run).not.toBeNull();
    }
    await advance(3000);
    expect(result.current.run).toBeNull();
    expect(result.current.connection).toBe('stopped');
    expect(result.current.reason).toBe('max_duration');
    const asked = server.calls.length;
    await advance(10 * maxWatchMs);
    expect(server.calls.length).toBe(asked);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('cleans up on unmount: no timer, no request', async () => {
    const server = fakeServer();
    server.start(10);
    const { result, unmount } = mount(server);
    await advance(10);
    expect(result.current.run).not.toBeNull();
    const stream = server.calls.find((c) => c.url.includes('/runs/active/stream'));
    expect(stream.signal.aborted).toBe(false);
    expect(vi.getTimerCount()).toBeGreaterThan(0);

    unmount();
    expect(stream.signal.aborted).toBe(true);
    expect(server.openStreams()).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
    const asked = server.calls.length;
    await advance(HOUR);
    expect(server.calls.length).toBe(asked);
  });

  it('sends the session position with every read', async () => {
    const server = fakeServer();
    server.start(10);
    let position = 41;
    mount(server, { minPosition: () => position });
    await advance(10);
    position = 57; // the page's own cancel answered Runledger-Position: 57
    server.streamStatus = 500; // the stream drops; the watcher asks again
    server.openStreams().forEach((s) => {
      s.closed = true;
      s.ctl.close();
    });
    await advance(2000);
    const positions = server.calls.map((c) => c.headers['Runledger-Min-Position']);
    expect(positions[0]).toBe('41');
    expect(positions.at(-1)).toBe('57');
    expect(positions.every((p) => p === '41' || p === '57')).toBe(true);
  });

  for (const eventualReads of [false, true]) {
    it(`${eventualReads ? 'with eventualReads, does not send' : 'sends'} the highest position it was answered with its next reads`, async () => {
      const server = fakeServer();
      server.start(10);
      mount(server, eventualReads ? { eventualReads } : {});
      await advance(10);
      expect(server.calls[0].headers['Runledger-Min-Position']).toBeUndefined();
      server.run.position = 57; // the state the watcher was shown reflects log position 57
      server.heartbeat(3);
      await advance(10);
      server.streamStatus = 500; // the stream drops; the watcher reads again, maybe from a replica behind
      server.openStreams().forEach((s) => {
        s.closed = true;
        s.ctl.close();
      });
      await advance(2000);
      const later = server.calls.slice(1).map((c) => c.headers['Runledger-Min-Position']);
      expect(later.length).toBeGreaterThan(0);
      expect(later.every((p) => p === (eventualReads ? undefined : '57'))).toBe(true);
    });
  }

  it('watches nothing without a business, and restarts on a new one', async () => {
    const server = fakeServer();
    server.start(10);
    const { result, rerender } = mount(server);
    rerender({ business: '' });
    await advance(HOUR);
    expect(result.current.run).toBeNull();
    expect(vi.getTimerCount()).toBe(0);
    rerender({ business: BUSINESS });
    server.heartbeat(1);
    await advance(10);
    expect(result.current.run?.completed_calls).toBe(1);
  });
});
