"""What the tests share: the served runledger that clients/python_test.go
started (its URL, a fault proxy in front of it, a control server), tokens,
the log of a run, and a simulated dialer."""

from __future__ import annotations

import json
import os
import threading
import time
import unittest
import urllib.request
import uuid
from typing import Any, Callable, Dict, List, Optional

import runledger

URL = os.environ.get("RUNLEDGER_TEST_URL", "")
PROXY_URL = os.environ.get("RUNLEDGER_TEST_PROXY_URL", "")
CONTROL_URL = os.environ.get("RUNLEDGER_TEST_CONTROL_URL", "")
SERVER_PID = int(os.environ.get("RUNLEDGER_TEST_SERVER_PID") or 0)
TTL = float(os.environ.get("RUNLEDGER_TEST_TTL") or 0)
INTERVAL = float(os.environ.get("RUNLEDGER_TEST_INTERVAL") or 0)


def served() -> None:
    """served skips a test that needs the server when it was not started by
    `go test ./clients/` (which runs these tests with it)."""
    if not URL:
        raise unittest.SkipTest("needs a served runledger: run `go test ./clients/ -run TestPython`")


def business() -> str:
    """A business of its own for each test."""
    return "py-" + uuid.uuid4().hex[:12]


def control(method: str, path: str) -> bytes:
    req = urllib.request.Request(CONTROL_URL + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.read()


def token(business_id: str, role: str) -> str:
    return control("GET", "/token?business=%s&role=%s" % (business_id, role)).decode()


def client(business_id: str, role: str = "worker", via_proxy: bool = False, **kw: Any) -> runledger.Client:
    kw.setdefault("min_backoff", 0.02)
    kw.setdefault("max_backoff", 0.2)
    kw.setdefault("worker_id", "py-test-worker")
    return runledger.Client(PROXY_URL if via_proxy else URL, token(business_id, role), timeout=5.0, **kw)


def events(business_id: str, run_id: str) -> List[Dict[str, Any]]:
    """The run's events, read from the log (GET …/events)."""
    req = urllib.request.Request("%s/v1/businesses/%s/runs/%s/events" % (URL, business_id, run_id),
                                 headers={"Authorization": "Bearer " + token(business_id, "user")})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read())["events"]


def count(evs: List[Dict[str, Any]], typ: str) -> int:
    return sum(1 for e in evs if e["type"] == typ)


def proxied(business_id: str) -> List[Dict[str, Any]]:
    """The business's requests the fault proxy saw, in the order it answered them
    (status 0: the client gave up on it, or its answer was dropped)."""
    return json.loads(control("GET", "/proxy/requests?business=" + business_id))


def heartbeats(business_id: str, status: int) -> int:
    """How many of the business's heartbeats the proxy saw end with status."""
    return sum(1 for r in proxied(business_id) if r["endpoint"] == "heartbeat" and r["status"] == status)


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(0.02)


class Dialer:
    """Dialer is a simulated worker: it places calls of call_time seconds
    one after the other inside a run, checking before each, and remembers
    when each call started (wall clock) and what stopped it."""

    def __init__(self, call_time: float = 0.02, calls: int = 0) -> None:
        self.call_time = call_time
        self.calls = calls
        self.starts: List[float] = []
        self.stopped: Optional[BaseException] = None
        self.stopped_at = 0.0
        self.first_call = threading.Event()

    def work(self, run: runledger.Run) -> None:
        i = 0
        try:
            while self.calls == 0 or i < self.calls:
                run.wait_if_paused()
                self.starts.append(time.time())
                self.first_call.set()
                time.sleep(self.call_time)
                i += 1
                run.progress(i, 0)
        except runledger.RunStopped as err:
            self.stopped, self.stopped_at = err, time.time()
            raise

    def calls_after(self, t: float) -> int:
        return sum(1 for s in self.starts if s > t)


class Worker(threading.Thread):
    """Worker runs `with client.run(...) as run: dialer.work(run)` in a
    thread and keeps what the block raised."""

    def __init__(self, c: runledger.Client, business_id: str, dialer: Dialer, total_calls: int = 100000,
                 run_id: Optional[str] = None) -> None:
        super().__init__(name="test-worker", daemon=True)
        self.c, self.business_id, self.dialer, self.total_calls = c, business_id, dialer, total_calls
        self.run_id = run_id or str(uuid.uuid4())
        self.error: Optional[BaseException] = None
        self.handle: Optional[runledger.Run] = None

    def run_block(self) -> None:
        with self.c.run(self.business_id, total_calls=self.total_calls, run_id=self.run_id) as run:
            self.handle = run
            self.dialer.work(run)

    def run(self) -> None:  # type: ignore[override]
        try:
            self.run_block()
        except BaseException as err:  # noqa: B902 - kept for the test to assert on
            self.error = err

    def result(self, timeout: float) -> Optional[BaseException]:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("the worker's with block did not end within %gs" % timeout)
        return self.error


def runledger_threads() -> List[str]:
    """The names of the threads of this package still running."""
    return [t.name for t in threading.enumerate() if t.name.startswith("runledger-")]
