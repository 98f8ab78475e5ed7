// useActiveRun: the watcher as a React hook (the subpath export
// "@runledger/watcher/react"). It is small and side-effect free until
// mounted: the Watcher is created in an effect, and stopped (no request,
// no timer, no listener left) when the component unmounts or the business,
// token or base URL changes.
import { useEffect, useRef, useState } from 'react';
import { Watcher } from './watcher.js';

const INITIAL = Object.freeze({ run: null, connection: 'idle', reason: null, lastRun: null, error: null });

/**
 * useActiveRun follows business's active run and returns
 * {run, connection, reason, lastRun, error}:
 *  - run: the run to show as a bar, or null (a bar shows exactly while run is not null);
 *  - connection: "idle", "streaming", "polling", "reconnecting", "stopped" or "lost";
 *  - reason: why no bar shows (null while one does, or before the first answer):
 *    "ended", "no_active_run", "not_active", "stale", "invalid", "lost", or the
 *    stop's reason ("max_duration", "unauthorized", "pagehide", "stop");
 *  - lastRun: the last run seen (for "ended": its final state), or null;
 *  - error: the last error's message when reason is "lost".
 * options are the Watcher's (token or getToken, baseUrl, minPosition, fetch, tunables);
 * waitForStart is on unless set to false, so an idle component costs one open
 * stream and no request. Reads reflect the highest position the watch was
 * shown (session consistency) unless eventualReads is true.
 * A falsy business watches nothing.
 */
export function useActiveRun(business, options = {}) {
  const [state, setState] = useState(INITIAL);
  const latest = useRef(options);
  latest.current = options;
  const { token, baseUrl } = options;

  useEffect(() => {
    if (!business) return undefined;
    const { on: _ignored, ...rest } = latest.current;
    const watcher = new Watcher({
      // As the page does: an idle component holds one open stream of the
      // business (…/runs/active/stream?wait=true) and asks nothing until a
      // run starts; polling is only the fallback (or an older server's way).
      waitForStart: true,
      ...rest,
      business,
      getToken: rest.getToken ?? (() => latest.current.token ?? token),
      // Session consistency is the watcher's: every read reflects at least
      // the highest log position it was shown and the caller's minPosition
      // (read at each request); eventualReads: true opts out of the former.
      minPosition: () => {
        const m = latest.current.minPosition;
        return typeof m === 'function' ? m() : m;
      },
    });
    let live = true;
    const update = (patch) => {
      if (live) setState((s) => ({ ...s, ...patch }));
    };
    watcher.addEventListener('run', (e) => update({ run: e.detail.run, lastRun: e.detail.run, reason: null, error: null }));
    watcher.addEventListener('ended', (e) => update({ run: null, lastRun: e.detail.run, reason: 'ended' }));
    watcher.addEventListener('inactive', (e) =>
      update({ run: null, lastRun: e.detail.run, reason: e.detail.reason }),
    );
    watcher.addEventListener('lost', (e) => update({ run: null, connection: 'lost', reason: 'lost', error: e.detail.error }));
    watcher.addEventListener('stopped', (e) => update({ run: null, connection: 'stopped', reason: e.detail.reason }));
    watcher.addEventListener('connection', (e) => update({ connection: e.detail.state }));
    setState(INITIAL);
    watcher.start();
    return () => {
      live = false;
      watcher.stop('unmount');
    };
  }, [business, token, baseUrl]);

  return state;
}
