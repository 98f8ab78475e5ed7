"""The client of runledger's HTTP API."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any, Dict, Iterator, Optional
from urllib.parse import quote

from ._http import Abort, Transport
from ._time import format_duration, parse_duration
from .errors import APIError
from .run import Run
from .watch import Event, watch

__all__ = ["Client", "RunInfo", "Policy"]

#: RunInfo is a run as the server shows it (the contract's run JSON).
RunInfo = Dict[str, Any]


class Policy:
    """Policy is the service's policy (GET /v1/policy), durations in seconds."""

    def __init__(self, stale_after: float, heartbeat_min_interval: float, stall_after: float) -> None:
        self.stale_after = stale_after
        self.heartbeat_min_interval = heartbeat_min_interval
        self.stall_after = stall_after

    def __repr__(self) -> str:
        return "Policy(stale_after=%r, heartbeat_min_interval=%r, stall_after=%r)" % (
            self.stale_after, self.heartbeat_min_interval, self.stall_after)


def business_path(business: str) -> str:
    return "/v1/businesses/" + quote(business, safe="")


def run_path(business: str, run_id: str) -> str:
    return business_path(business) + "/runs/" + quote(run_id, safe="")


class Client:
    """Client talks to one runledger server; it is safe to share between threads.

    ``token`` is a worker token for :meth:`run`, a user (or operator) token
    for reads, :meth:`watch` and cancel. ``timeout`` bounds each attempt of
    each request (seconds); failed attempts (no answer, 5xx, 429) are
    retried up to ``max_attempts`` in all, after a jittered backoff between
    ``min_backoff`` and ``max_backoff`` or the answer's Retry-After.

    Reads reflect this client's own commands (session consistency): it
    remembers the highest log position the server answered it and sends it
    with each read (``Runledger-Min-Position``); the server waits for its
    read model rather than answer an older state. ``eventual_reads=True``
    turns this off.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        *,
        max_attempts: int = 6,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        worker_id: Optional[str] = None,
        heartbeat_interval: Optional[float] = None,
        eventual_reads: bool = False,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        self.logger = logger or logging.getLogger("runledger")
        self._http = Transport(base_url, token, timeout, max_attempts, min_backoff, max_backoff,
                               eventual_reads, self.logger)
        self.worker_id = worker_id or "%s-%d" % (socket.gethostname(), os.getpid())
        self.heartbeat_interval = heartbeat_interval

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return self._http.base_url

    @property
    def timeout(self) -> float:
        """The bound of one attempt of one request, in seconds."""
        return self._http.timeout

    @property
    def position(self) -> int:
        """The highest log position the server answered this client (0 before its first command)."""
        return self._http.position

    def observe_position(self, position: int) -> None:
        """Raise the position this client's reads wait for (a lower one changes nothing)."""
        self._http.observe_position(position)

    # Worker.

    def run(
        self,
        business: str,
        total_calls: int,
        worker_id: Optional[str] = None,
        *,
        run_id: Optional[str] = None,
        stale_after: Optional[float] = None,
        stall_after: Optional[float] = None,
    ) -> Run:
        """run returns the context manager of one run of ``business``:

        ``with client.run("acme", total_calls=120) as run:`` starts the run
        (a client-chosen id, one Idempotency-Key for every attempt),
        heartbeats it from a background thread at the interval the server's
        policy implies, and ends it when the block exits: completed, failed
        with the exception's message, or cancelled when a cancel was
        requested (whatever the block raised). See :class:`runledger.Run`.
        """
        return Run(self, business, total_calls, worker_id or self.worker_id,
                   run_id or str(uuid.uuid4()), stale_after, stall_after)

    def policy(self) -> Policy:
        """policy returns the service's policy (GET /v1/policy, any role)."""
        p = self._http.request("GET", "/v1/policy")
        return Policy(parse_duration(p.get("stale_after") or "0s"),
                      parse_duration(p.get("heartbeat_min_interval") or "0s"),
                      parse_duration(p.get("stall_after") or "0s"))

    def start_run(
        self,
        business: str,
        run_id: str,
        total_calls: int,
        worker_id: str,
        stale_after: Optional[float] = None,
        stall_after: Optional[float] = None,
    ) -> RunInfo:
        """start_run starts a run (worker token) under one Idempotency-Key for
        all its attempts: a retried start is success. It raises APIError with
        code ``active_run_exists`` (and ``run_id``) if another run is active."""
        body: Dict[str, Any] = {"run_id": run_id, "total_calls": total_calls, "worker_id": worker_id}
        if stale_after:
            body["stale_after"] = format_duration(stale_after)
        if stall_after:
            body["stall_after"] = format_duration(stall_after)
        return self._http.request("POST", business_path(business) + "/runs", body, key=str(uuid.uuid4()))

    def heartbeat(self, business: str, run_id: str, completed: int, failed: int,
                  timeout: Optional[float] = None, abort: Optional[Abort] = None) -> Dict[str, Any]:
        """heartbeat sends one heartbeat with the cumulative counts, once (the
        next heartbeat is the retry), and returns the answer
        (``run``, ``cancel_requested``, ``pause_requested``). It raises
        APIError with code ``run_ended`` if the run has ended. ``abort`` (an
        internal Abort) lets another thread cut the heartbeat in flight."""
        return self._http.request("POST", run_path(business, run_id) + "/heartbeat",
                                  {"completed_calls": completed, "failed_calls": failed}, once=True, timeout=timeout,
                                  abort=abort)

    def complete_run(self, business: str, run_id: str, outcome: str, completed: int, failed: int,
                     error: Optional[str] = None) -> RunInfo:
        """complete_run ends a run (worker token) as ``completed``, ``failed`` or
        ``cancelled`` under one Idempotency-Key for all its attempts, so a retry
        whose first answer was lost gets that answer. It raises APIError with
        code ``run_ended`` if the run had already ended."""
        body: Dict[str, Any] = {"outcome": outcome, "completed_calls": completed, "failed_calls": failed}
        if error:
            body["error"] = error
        return self._http.request("POST", run_path(business, run_id) + "/complete", body, key=str(uuid.uuid4()))

    # User.

    def cancel_run(self, business: str, run_id: str, reason: str = "") -> RunInfo:
        """cancel_run asks a run to stop (user token): graceful on a live run
        (``cancel_requested``), forced on a silent one (``status`` cancelled)."""
        return self._user_command(run_path(business, run_id) + "/cancel", reason)

    def pause_run(self, business: str, run_id: str, reason: str = "") -> RunInfo:
        """pause_run asks a run's worker to pause (user token); repeating is harmless."""
        return self._user_command(run_path(business, run_id) + "/pause", reason)

    def resume_run(self, business: str, run_id: str, reason: str = "") -> RunInfo:
        """resume_run lifts a pause (user token); repeating is harmless."""
        return self._user_command(run_path(business, run_id) + "/resume", reason)

    def _user_command(self, path: str, reason: str) -> RunInfo:
        body = {"reason": reason} if reason else {}
        return self._http.request("POST", path, body, key=str(uuid.uuid4()))

    # Reads.

    def get_run(self, business: str, run_id: str) -> RunInfo:
        """get_run returns one run in any status; APIError ``not_found`` if there is none."""
        return self._http.request("GET", run_path(business, run_id), read=True)

    def get_active(self, business: str) -> Optional[RunInfo]:
        """get_active returns the business's active run, or None if it has none."""
        try:
            return self._http.request("GET", business_path(business) + "/runs/active", read=True)
        except APIError as err:
            if err.code == "no_active_run":
                return None
            raise

    def watch(self, business: str, last_event_id: str = "") -> Iterator[Event]:
        """watch yields the events of the business's active-run stream (SSE):
        the run's state, each change, and last its end (``ended`` or
        ``inactive``), after which the generator returns. A dropped stream is
        resumed with Last-Event-ID after a backoff. It raises APIError
        ``no_active_run`` if the business has no active run at the start.
        Closing the generator closes the connection."""
        return watch(self._http, business_path(business), run_path, business, last_event_id)
