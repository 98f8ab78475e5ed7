"""One HTTP request to the server: timeouts, retries with jittered backoff
honouring Retry-After, problem+json errors, and the session's position."""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import APIError, TransportError

#: The longest Retry-After this client waits for.
MAX_RETRY_AFTER = 30.0

POSITION_HEADER = "Runledger-Position"
MIN_POSITION_HEADER = "Runledger-Min-Position"

Answer = Tuple[int, Dict[str, str], bytes]


class Abort:
    """Abort lets one thread cut the requests another thread sends with it,
    one at a time: abort() shuts down the socket of the request in flight
    (its reader sees the connection end at once, even mid-body) and of any
    sent after it. The sending thread still closes its own connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._aborted = False
        self.opener: Optional[urllib.request.OpenerDirector] = None

    @property
    def aborted(self) -> bool:
        with self._lock:
            return self._aborted

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)

    def connected(self, sock: socket.socket) -> None:
        """Called by a connection once its socket is open."""
        with self._lock:
            self._socks.append(sock)
            aborted = self._aborted
        if aborted:
            _shutdown(sock)

    def done(self) -> None:
        """Called once a request's answer was read (or it failed)."""
        with self._lock:
            self._socks = []


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _abortable_opener(abort: Abort) -> urllib.request.OpenerDirector:
    """An opener whose connections register with abort while open."""

    def tracked(base: Any) -> Any:
        class Conn(base):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                abort.connected(self.sock)

        return Conn

    http_conn, https_conn = tracked(http.client.HTTPConnection), tracked(http.client.HTTPSConnection)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(http_conn, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            kw: Dict[str, Any] = {"context": getattr(self, "_context", None)}
            if hasattr(self, "_check_hostname"):  # Python < 3.12
                kw["check_hostname"] = getattr(self, "_check_hostname")
            return self.do_open(https_conn, req, **kw)

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), HTTPHandler(), HTTPSHandler())


class Transport:
    """Transport sends requests for a Client and remembers the highest log
    position the server answered (what its reads then wait for)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float,
        max_attempts: int,
        min_backoff: float,
        max_backoff: float,
        eventual_reads: bool,
        logger: logging.Logger,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (base_url.startswith("http://") or base_url.startswith("https://")):
            raise ValueError("runledger: base_url %r must be an http(s) URL" % base_url)
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.min_backoff = min_backoff
        self.max_backoff = max(max_backoff, min_backoff)
        self.eventual_reads = eventual_reads
        self.logger = logger
        self.sleep = sleep
        self._lock = threading.Lock()
        self._position = 0
        # No proxy from the environment: a worker talks to its server directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # The session's position.

    @property
    def position(self) -> int:
        with self._lock:
            return self._position

    def observe_position(self, position: int) -> None:
        with self._lock:
            if position > self._position:
                self._position = position

    def min_position_headers(self) -> Dict[str, str]:
        """The header a read sends to reflect this session's commands."""
        pos = self.position
        if pos > 0 and not self.eventual_reads:
            return {MIN_POSITION_HEADER: str(pos)}
        return {}

    def note_position(self, headers: Any) -> None:
        value = headers.get(POSITION_HEADER) if headers is not None else None
        if value:
            try:
                self.observe_position(int(value))
            except ValueError:
                pass

    # Requests.

    def backoff(self, attempt: int) -> float:
        """min_backoff doubled at each attempt, capped at max_backoff, the upper half random."""
        d = min(self.max_backoff, self.min_backoff * (2 ** min(attempt - 1, 30)))
        return d / 2 + random.uniform(0, d / 2)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str = "",
        once: bool = False,
        read: bool = False,
        timeout: Optional[float] = None,
        should_stop: Optional[Callable[[], bool]] = None,
        abort: Optional[Abort] = None,
    ) -> Any:
        """request sends one API call and returns its decoded JSON answer.

        Network errors, 5xx and 429 answers are retried (all attempts send the
        same bytes and the same Idempotency-Key) up to max_attempts, after a
        jittered backoff or the answer's Retry-After (at most 30 s), unless
        once is set. It raises APIError for a non-2xx answer and
        TransportError when no answer came or the answer was not JSON. With
        abort, another thread's abort.abort() ends the request at once
        (TransportError) and no retry is made.
        """
        payload = json.dumps(body).encode() if body is not None else None
        attempts = 1 if once else self.max_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                if abort is not None and abort.aborted:
                    raise TransportError("runledger: %s %s: aborted" % (method, path))
                status, headers, raw = self._attempt(method, path, payload, key, read, timeout, abort)
            except (APIError, TransportError) as err:
                transient = err.transient if isinstance(err, APIError) else True
                if not transient or attempt >= attempts or (should_stop is not None and should_stop()) or (
                        abort is not None and abort.aborted):
                    raise
                wait = self.backoff(attempt)
                if isinstance(err, APIError) and err.retry_after > 0:
                    wait = max(wait, min(err.retry_after, MAX_RETRY_AFTER))
                self.logger.warning("runledger: retrying %s %s (attempt %d) in %.2fs: %s", method, path, attempt, wait, err)
                self.sleep(wait)
                continue
            # An answer that is not JSON (a proxy's page) is an Error, not
            # retried, as in the Go SDK: never an exception of another kind,
            # which would end the heartbeat thread.
            try:
                return json.loads(raw) if raw else None
            except ValueError as err:
                raise TransportError("runledger: %s %s: %d answer is not JSON: %s" % (method, path, status, err)) from err

    def _attempt(
        self, method: str, path: str, payload: Optional[bytes], key: str, read: bool, timeout: Optional[float],
        abort: Optional[Abort] = None,
    ) -> Answer:
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if key:
            headers["Idempotency-Key"] = key
        if read:
            headers.update(self.min_position_headers())
        req = urllib.request.Request(self.base_url + path, data=payload, method=method, headers=headers)
        limit = self.timeout if timeout is None else max(0.001, timeout)
        opener = self._opener
        if abort is not None:
            if abort.opener is None:
                abort.opener = _abortable_opener(abort)
            opener = abort.opener
        try:
            with opener.open(req, timeout=limit) as res:
                raw = res.read()
                self.note_position(res.headers)
                return res.status, dict(res.headers), raw
        except urllib.error.HTTPError as res:
            try:
                raw = res.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                res.close()
            self.note_position(res.headers)
            raise problem_error(method, path, res.code, res.headers, raw) from None
        except (socket.timeout, TimeoutError) as err:
            raise TransportError("runledger: %s %s: timed out after %.3gs" % (method, path, limit), "timeout") from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise TransportError("runledger: %s %s: timed out after %.3gs" % (method, path, limit), "timeout") from err
            raise TransportError("runledger: %s %s: %s" % (method, path, reason)) from err
        except (OSError, http.client.HTTPException) as err:
            raise TransportError("runledger: %s %s: %s" % (method, path, err)) from err
        finally:
            if abort is not None:
                abort.done()


def problem_error(method: str, path: str, status: int, headers: Any, raw: bytes) -> APIError:
    """problem_error builds the APIError of a non-2xx answer."""
    problem: Dict[str, Any] = {}
    try:
        decoded = json.loads(raw) if raw else {}
        if isinstance(decoded, dict):
            problem = decoded
    except ValueError:
        pass
    detail = str(problem.get("detail") or "")
    code = str(problem.get("code") or "")
    if not code and not detail:
        detail = http.client.responses.get(status, "")
    run = problem.get("run")
    return APIError(
        method,
        path,
        status,
        code=code,
        detail=detail,
        fields=problem.get("errors") or [],
        run_id=str(problem.get("run_id") or ""),
        run=run if isinstance(run, dict) else None,
        retry_after=retry_after(headers.get("Retry-After") if headers is not None else None),
    )


def retry_after(value: Optional[str]) -> float:
    """retry_after reads a Retry-After header in seconds or as an HTTP date (0 if absent)."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())
