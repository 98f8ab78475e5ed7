// The README's "Use the watcher from React" example, type-checked by tsc and
// rendered by test/example.test.jsx so it cannot rot.
import { useActiveRun } from '@runledger/watcher/react';

const GONE: Record<string, string> = {
  ended: 'The queue run has finished.',
  stale: 'The dialer stopped reporting; the run is no longer active.',
  lost: 'Lost contact with the server. Refresh to check again.',
  max_duration: 'Stopped watching. Refresh to check again.',
};

export function OutboundCallsProgress({ business, token }: { business: string; token: string }) {
  const { run, connection, reason, lastRun } = useActiveRun(business, { token });
  if (!run) {
    const why = reason ? GONE[reason] : undefined;
    return <p role="status">{why ?? 'No queue run in progress.'}{reason === 'ended' && lastRun ? ` (${lastRun.status})` : ''}</p>;
  }
  const done = run.completed_calls + run.failed_calls;
  return (
    <section aria-label="Queue run">
      <progress max={run.total_calls} value={done} aria-label="Calls placed" />
      <p role="status">
        {done} of {run.total_calls} calls{run.paused ? ' (paused)' : ''}
        {connection === 'reconnecting' ? ' — reconnecting…' : ''}
      </p>
    </section>
  );
}
