"""One run of a worker: started on entry, heartbeated from a named
background thread, fenced when it is no longer the worker's, ended on exit."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type

from ._http import Abort
from ._time import parse_time
from .errors import APIError, Error, LivenessLost, RunCancelled, RunEnded, RunStopped

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Run", "pace"]

#: A misconfigured policy must not turn the heartbeat loop into a busy loop.
MIN_HEARTBEAT_INTERVAL = 0.01


def pace(heartbeat_min_interval: float, ttl: float, override: Optional[float] = None) -> Tuple[float, float]:
    """pace returns the heartbeat interval and the liveness margin for a run
    of TTL ``ttl`` (seconds), as the Go SDK derives them::

        interval = heartbeat_min_interval (or override; ttl/30 if zero), at most ttl/10, at least 10ms
        margin   = max(2 × interval, ttl/10)

    Every heartbeat at the server's minimum interval can be stored, so
    progress and a cancel lag by at most one interval; about eight
    heartbeats in a row must go unanswered before the margin is reached.
    """
    interval = override if override and override > 0 else heartbeat_min_interval
    if interval <= 0:
        interval = ttl / 30
    interval = max(min(interval, ttl / 10), MIN_HEARTBEAT_INTERVAL)
    return interval, max(2 * interval, ttl / 10)


def _remaining(run: Dict[str, Any]) -> Optional[float]:
    """How long the server said the run has before it counts as stale,
    judged on the server's clock (stale_at - server_time), in seconds."""
    try:
        stale_at, server_time = parse_time(run.get("stale_at")), parse_time(run.get("server_time"))
    except ValueError:
        return None
    if stale_at is None or server_time is None:
        return None
    return (stale_at - server_time).total_seconds()


class Run:
    """Run is one run of a worker, used as a context manager (see Client.run).

    Inside the block the work reports progress with :meth:`progress` (cheap:
    nothing is sent; the heartbeat thread sends the latest counts at its own
    pace) and, before each call it places, calls :meth:`check` or
    :meth:`wait_if_paused`, which raise a :class:`RunStopped` when it must
    stop: :class:`RunCancelled` (a user's cancel, delivered within one
    heartbeat interval), :class:`RunEnded` (the run was ended elsewhere, e.g.
    reaped) or :class:`LivenessLost` (no heartbeat acknowledged for the TTL
    minus a margin: stop before the server calls the run stale).

    On exit the heartbeat thread is stopped (a heartbeat in flight is
    aborted, as the Go SDK does, not waited for) and joined, then the run is
    ended: cancelled when a cancel was requested, whatever the block raised
    (as the Go SDK: the user asked the run to stop and it stopped; a
    RunCancelled raised out of the block is not raised further, any other
    exception propagates); otherwise completed on a normal exit, or failed
    with the exception's message on an exception (which propagates).
    A fenced run (RunEnded, LivenessLost) is not ended again, and the fence
    is raised from the block if the block did not raise it.
    """

    def __init__(self, client: "Client", business: str, total_calls: int, worker_id: str, run_id: str,
                 stale_after: Optional[float], stall_after: Optional[float]) -> None:
        self._client = client
        self.business = business
        self.run_id = run_id
        self.total_calls = total_calls
        self.worker_id = worker_id
        self._stale_after = stale_after
        self._stall_after = stall_after
        #: Set once a heartbeat's answer delivered a cancel request.
        self.cancelled = threading.Event()
        #: Set once the work must stop for any reason (cancel, end, liveness).
        self.stopped = threading.Event()
        self.interval = 0.0
        self.margin = 0.0
        #: The run as the server last showed it (after exit: as it ended).
        self.info: Dict[str, Any] = {}
        self._cond = threading.Condition()
        self._completed = 0
        self._failed = 0
        self._refused = False
        self._paused = False
        self._fence: Optional[RunStopped] = None
        self._stale_by = 0.0  # time.monotonic() by which the server judges the run silent
        self._halt = threading.Event()
        self._abort = Abort()  # cuts the heartbeat in flight when the block is left
        self._thread: Optional[threading.Thread] = None

    # The work's side.

    def progress(self, completed: int, failed: int = 0) -> None:
        """progress records the cumulative counts of calls done and failed so
        far. Counts that go backwards or past the total are ignored (the
        server would refuse them), keeping the last valid ones."""
        with self._cond:
            if completed < self._completed or failed < self._failed or completed + failed > self.total_calls:
                self._refused = True
                return
            self._completed, self._failed = completed, failed

    @property
    def counts(self) -> Tuple[int, int]:
        """The (completed, failed) counts recorded so far."""
        with self._cond:
            return self._completed, self._failed

    @property
    def paused(self) -> bool:
        """True while a user has the run paused: place no new call."""
        with self._cond:
            return self._paused

    def check(self) -> None:
        """check raises RunCancelled, RunEnded or LivenessLost if the work must
        stop, and returns otherwise. Liveness is judged here too, so a
        heartbeat stuck in flight never lets the work go on past the margin."""
        with self._cond:
            self._check_locked()

    def _check_locked(self) -> None:
        if self._fence is None and self._stale_by and time.monotonic() >= self._stale_by - self.margin:
            self._fence_locked(LivenessLost(
                "runledger: run %s: no heartbeat acknowledged for its TTL minus %.3gs" % (self.run_id, self.margin),
                self.info))
        if self._fence is not None:
            raise self._fence
        if self.cancelled.is_set():
            raise RunCancelled("runledger: run %s: cancel requested" % self.run_id, self.info)

    def wait_if_paused(self, timeout: Optional[float] = None) -> None:
        """wait_if_paused is the check a dialer makes before each call: it
        raises as check() does, returns at once if the run is not paused, and
        otherwise blocks until the run is resumed (or stopped: a cancel of a
        paused run ends the wait with RunCancelled). With a timeout it returns
        after that many seconds even if still paused."""
        give_up = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._check_locked()
                if not self._paused:
                    return
                wait = self._stale_by - self.margin - time.monotonic() if self._stale_by else self.interval
                if give_up is not None:
                    wait = min(wait, give_up - time.monotonic())
                    if wait <= 0:
                        return
                self._cond.wait(max(0.001, wait))

    def sleep(self, seconds: float) -> None:
        """sleep waits for seconds, or less if the work must stop, then check()s."""
        self.stopped.wait(seconds)
        self.check()

    # The context manager.

    def __enter__(self) -> "Run":
        c = self._client
        policy = c.policy()
        ttl = self._stale_after or policy.stale_after
        if ttl <= 0:
            raise Error("runledger: the server's policy has no stale_after")
        self.interval, self.margin = pace(policy.heartbeat_min_interval, ttl, c.heartbeat_interval)
        sent = time.monotonic()
        started = c.start_run(self.business, self.run_id, self.total_calls, self.worker_id,
                              self._stale_after, self._stall_after)
        self._stale_by = sent + ttl
        self._acknowledged(sent, started)
        c.logger.info("runledger: run %s started (business %s, heartbeat every %.3gs, liveness margin %.3gs)",
                      self.run_id, self.business, self.interval, self.margin)
        self._thread = threading.Thread(target=self._heartbeat_loop, name="runledger-heartbeat-" + self.run_id[:8],
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> bool:
        self._stop_heartbeats()
        with self._cond:
            fence = self._fence
        if fence is not None:
            self._client.logger.warning("runledger: run %s was fenced (%s); not ending it", self.run_id, fence.code)
            if exc is None:
                raise fence
            return False
        if self.cancelled.is_set():
            # As the Go SDK: the user asked the run to stop and it stopped,
            # whatever the block raised on its way out.
            outcome, error = "cancelled", None
        elif exc is not None:
            outcome, error = "failed", str(exc) or type(exc).__name__
        else:
            outcome, error = "completed", None
        completed, failed = self.counts
        try:
            final = self._client.complete_run(self.business, self.run_id, outcome, completed, failed, error)
        except APIError as err:
            # Ended as asked: a complete of ours whose answer (and stored key) was lost.
            if err.run is None or not _ended_as(err.run, outcome):
                return self._not_ended(outcome, err, exc)
            final = err.run
        except Error as err:
            return self._not_ended(outcome, err, exc)
        self.info = final
        self._client.logger.info("runledger: run %s ended %s", self.run_id, final.get("status"))
        return outcome == "cancelled" and isinstance(exc, RunCancelled)

    def _not_ended(self, outcome: str, err: Error, exc: Optional[BaseException]) -> bool:
        """A complete that failed: raised from a block that exited normally;
        logged when the block raised, so that its exception is the one seen."""
        if exc is None:
            raise err
        self._client.logger.error("runledger: could not end run %s as %s: %s", self.run_id, outcome, err)
        return False

    def _stop_heartbeats(self) -> None:
        # As the Go SDK, a heartbeat in flight is aborted rather than waited
        # for: its socket is shut down, so the join below is prompt.
        self._halt.set()
        self._abort.abort()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # The heartbeat thread.

    def _acknowledged(self, sent: float, run: Dict[str, Any]) -> None:
        with self._cond:
            self.info = run
            left = _remaining(run)
            if left is not None:
                self._stale_by = sent + left

    def _fence_locked(self, fence: RunStopped) -> None:
        if self._fence is None:
            self._fence = fence
        self.stopped.set()
        self._cond.notify_all()

    def _heartbeat_loop(self) -> None:
        c = self._client
        wait = self.interval
        while True:
            with self._cond:
                deadline = self._stale_by - self.margin
            if self._halt.wait(max(0.0, min(wait, deadline - time.monotonic()))):
                return
            wait = self.interval
            now = time.monotonic()
            if now >= deadline:
                with self._cond:
                    self._fence_locked(LivenessLost(
                        "runledger: run %s: no heartbeat acknowledged for its TTL minus %.3gs" % (self.run_id, self.margin),
                        self.info))
                c.logger.error("runledger: no heartbeat acknowledged in time; stopping the work of run %s "
                               "before it is reaped", self.run_id)
                return
            with self._cond:
                completed, failed, refused = self._completed, self._failed, self._refused
                self._refused = False
            if refused:
                c.logger.warning("runledger: ignored progress that went backwards or past the total (run %s)", self.run_id)
            try:
                answer = c.heartbeat(self.business, self.run_id, completed, failed,
                                     timeout=min(c.timeout, deadline - now), abort=self._abort)
            except APIError as err:
                if err.code == "run_ended":
                    with self._cond:
                        if err.run is not None:
                            self.info = err.run
                        self._fence_locked(RunEnded(
                            "runledger: run %s was ended by someone else (%s, %s)" % (
                                self.run_id, self.info.get("status"), self.info.get("end_reason")), self.info))
                    c.logger.warning("runledger: run %s ended by someone else; stopping the work", self.run_id)
                    return
                c.logger.warning("runledger: heartbeat of run %s failed: %s", self.run_id, err)
                if err.retry_after > wait:
                    wait = min(err.retry_after, 30.0)
                continue
            except Error as err:
                if self._halt.is_set():
                    return  # aborted: the block was left
                c.logger.warning("runledger: heartbeat of run %s failed: %s", self.run_id, err)
                continue
            if self._halt.is_set():
                return
            self._acknowledged(now, answer.get("run") or {})
            run = answer.get("run") or {}
            pause = answer.get("pause_requested")
            paused = bool(run.get("paused") if pause is None else pause)
            with self._cond:
                if paused != self._paused:
                    self._paused = paused
                    c.logger.info("runledger: run %s %s", self.run_id, "paused" if paused else "resumed")
                if answer.get("cancel_requested") and not self.cancelled.is_set():
                    c.logger.info("runledger: cancel requested; stopping the work of run %s", self.run_id)
                    self.cancelled.set()
                    self.stopped.set()
                self._cond.notify_all()

    def __repr__(self) -> str:
        return "Run(business=%r, run_id=%r)" % (self.business, self.run_id)


def _ended_as(run: Dict[str, Any], outcome: str) -> bool:
    """Whether run ended the way a worker's complete with outcome would have ended it."""
    status, reason = run.get("status"), run.get("end_reason")
    if outcome == "completed":
        return status == "completed"
    if outcome == "failed":
        return status == "failed" and reason == "worker_failed"
    return status == "cancelled" and reason == "cancelled"

