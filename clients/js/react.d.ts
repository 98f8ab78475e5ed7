// Declarations of react.js: the watcher as a React hook.
import type { ConnectionState, InactiveReason, Run, StopReason, WatcherOptions } from './watcher.js';

export type { Run } from './watcher.js';

/** Why no bar shows: the run ended, an inactive verdict, "lost", or the stop's reason. */
export type GoneReason = 'ended' | InactiveReason | 'lost' | StopReason;

/** What useActiveRun returns. */
export interface ActiveRunState {
  /** The run to show as a bar, or null: a bar shows exactly while this is not null. */
  run: Run | null;
  /** The watcher's connection, for a status line. */
  connection: ConnectionState | 'stopped' | 'lost';
  /** Why no bar shows; null while one does, or before the first answer. */
  reason: GoneReason | null;
  /** The last run seen (after "ended": its final state), or null. */
  lastRun: Run | null;
  /** The last error's message when reason is "lost". */
  error: string | null;
}

/** The Watcher's options, less business (the hook's first argument) and on (use the returned state). */
export type UseActiveRunOptions = Omit<WatcherOptions, 'business' | 'on'>;

/**
 * useActiveRun follows business's active run with a Watcher, created when the
 * component mounts (or business, token or baseUrl change) and stopped when it
 * unmounts. A falsy business watches nothing. waitForStart is on unless
 * options set it to false: an idle component holds one open stream of the
 * business and sends no request until a run starts.
 */
export declare function useActiveRun(business: string | null | undefined, options?: UseActiveRunOptions): ActiveRunState;
