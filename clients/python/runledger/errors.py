"""The exceptions of the runledger client, all rooted at :class:`Error`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "Error",
    "APIError",
    "TransportError",
    "RunStopped",
    "RunCancelled",
    "RunEnded",
    "LivenessLost",
]


class Error(Exception):
    """Error is the root of every exception this package raises.

    ``code`` is the problem+json ``code`` of the server's answer when there
    was one (``"run_ended"``, ``"active_run_exists"``, …), else a code of
    this package (``"network"``, ``"liveness_lost"``, …).
    """

    code: str = ""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        if code:
            self.code = code


class APIError(Error):
    """APIError is a non-2xx answer of the server: its RFC 9457 problem.

    ``status`` is the HTTP status, ``code`` and ``detail`` the problem's,
    ``fields`` the invalid fields of a ``validation_failed`` problem,
    ``run_id`` the active run that blocks a start (``active_run_exists``),
    ``run`` the final state of an ended run (``run_ended``), and
    ``retry_after`` the answer's Retry-After in seconds (0 when absent).
    """

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        code: str = "",
        detail: str = "",
        fields: Optional[List[Dict[str, str]]] = None,
        run_id: str = "",
        run: Optional[Dict[str, Any]] = None,
        retry_after: float = 0.0,
    ) -> None:
        message = "runledger: %s %s: %d" % (method, path, status)
        if code:
            message += " " + code
        if detail:
            message += ": " + detail
        super().__init__(message, code)
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.fields = fields or []
        self.run_id = run_id
        self.run = run
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """True when the same request may succeed if sent again (5xx, 429)."""
        return self.status >= 500 or self.status == 429


class TransportError(Error):
    """TransportError is a request that got no answer: a connection refused
    or dropped, a timeout, or an answer that is not JSON (e.g. a proxy's
    page). Its ``code`` is ``"network"`` or ``"timeout"``."""

    code = "network"


class RunStopped(Error):
    """RunStopped is raised in a run's work when it must stop placing calls;
    its subclasses say why. ``run`` is the run as last seen (a dict)."""

    def __init__(self, message: str, run: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.run = run


class RunCancelled(RunStopped):
    """RunCancelled: a user asked the run to stop (a graceful cancel, delivered
    in a heartbeat's answer). The ``with`` block ends the run as cancelled;
    raised out of the block, it is not raised further."""

    code = "cancel_requested"


class RunEnded(RunStopped):
    """RunEnded: a heartbeat was answered 409 ``run_ended``: the run was ended
    by someone else (the reaper, a forced cancel) and is no longer this
    worker's. The ``with`` block does not end it again."""

    code = "run_ended"


class LivenessLost(RunStopped):
    """LivenessLost: no heartbeat was acknowledged for the run's TTL minus a
    margin (the server is unreachable), so the run is about to be judged
    stale. The work must stop before the server ends the run; the ``with``
    block does not end it (the reaper does)."""

    code = "liveness_lost"
