// A TypeScript consumer of the package's declarations, checked by
// `tsc --noEmit --strict` in `npm test`: what compiles here (and what must
// not, marked @ts-expect-error) keeps watcher.d.ts and react.d.ts honest.
import {
  DEFAULTS,
  SSEParser,
  Watcher,
  backoffDelay,
  barVerdict,
  classifyAnswer,
  runPace,
  serverClockOffset,
  shouldShowBar,
  validateRun,
  type Run,
  type WatcherEventMap,
} from '@runledger/watcher';
import { useActiveRun, type ActiveRunState, type GoneReason } from '@runledger/watcher/react';

const w = new Watcher({
  business: 'acme',
  getToken: () => sessionStorage.getItem('token') ?? '',
  maxWatchMs: DEFAULTS.maxWatchMs,
  minPosition: () => 42,
  eventualReads: false,
  waitForStart: true,
  maxStreamWatchMs: DEFAULTS.maxStreamWatchMs,
  on: {
    run: ({ run, serverNow }) => console.log(run.completed_calls / run.total_calls, serverNow),
    lost: ({ errors, error }) => console.log(errors, error.toUpperCase()),
  },
});
w.addEventListener('inactive', (e) => {
  const reason: 'no_active_run' | 'not_active' | 'stale' | 'invalid' = e.detail.reason;
  const last: Run | null = e.detail.run;
  console.log(reason, last?.run_id);
});
w.addEventListener('ended', (e) => console.log(e.detail.run.status, e.detail.run.end_reason));
w.start();
const shown: Run | null = w.run;
const now: number | null = w.serverNow();
console.log(shown, now, w.state);
w.stop();

const checked = validateRun(JSON.parse('{}'), 'acme');
if (checked.ok) {
  const verdict = barVerdict(checked.run, Date.now());
  if (verdict.show) console.log(verdict.msLeft);
  else console.log(verdict.reason);
} else {
  console.log(checked.error.length);
}
const kind: 'run' | 'none' | 'denied' | 'retry' = classifyAnswer(404, 'no_active_run');
console.log(kind, shouldShowBar({}, 0), serverClockOffset('2026-01-01T00:00:00Z', 0), backoffDelay(2, { capMs: 100 }));
for (const ev of new SSEParser().push('data: {}\n\n')) console.log(ev.event, ev.data, ev.id);
const detail: WatcherEventMap['connection'] = { state: 'polling', errors: 0 };
console.log(detail);

export function useBar(business: string): string {
  const state: ActiveRunState = useActiveRun(business, { token: 't', pollMs: 2000 });
  const why: GoneReason | null = state.reason;
  return state.run ? `${state.run.completed_calls}/${state.run.total_calls}` : String(why);
}

// @ts-expect-error business is required
new Watcher({ token: 't' });
// @ts-expect-error business is a string
new Watcher({ business: 7, token: 't' });
// @ts-expect-error an unknown event's listener gets no typed detail
w.addEventListener('progress', (e: CustomEvent<{ run: Run }>) => console.log(e.detail.run));
// @ts-expect-error the hook takes the business as its first argument, not in options
useActiveRun('acme', { business: 'acme' });
// @ts-expect-error a run's counts are numbers
const bad: Run['completed_calls'] = '3';
console.log(bad);

// The pace helpers the page uses: what may be said of a shown run's pace.
declare const paced: Run;
const pace = runPace(paced, [{ t: 0, done: 1 }], Date.now());
const eta: number | null = pace.etaMs;
console.log(pace.state === 'silent' ? pace.silentMs : eta);
