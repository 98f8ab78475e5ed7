"""A generator over a business's active-run stream (Server-Sent Events)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

from ._http import Transport, problem_error
from .errors import APIError, Error, TransportError

__all__ = ["Event", "parse_events", "STREAM_IDLE_TIMEOUT"]

#: Three of the server's keep-alive intervals: a silent connection is dropped and resumed.
STREAM_IDLE_TIMEOUT = 45.0

TERMINAL = ("ended", "inactive")


class Event(NamedTuple):
    """Event is one event of the active-run stream: ``type`` is ``run`` (the
    run's state, then each change), ``ended`` or ``inactive`` (the last);
    ``id`` resumes after it (empty for an end read with a GET)."""

    id: str
    type: str
    run: Dict[str, Any]


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """parse_events turns SSE lines (without their line ends) into Events;
    comments and events without data are skipped."""
    ev_id, ev_type, data = "", "", []  # type: str, str, List[str]
    for line in lines:
        if line == "":
            if data:
                yield Event(ev_id, ev_type or "message", json.loads("\n".join(data)))
            ev_type, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "id":
            ev_id = value
        elif field == "event":
            ev_type = value
        elif field == "data":
            data.append(value)


def watch(http: Transport, business_path: str, run_path: Callable[[str, str], str], business: str,
          last_event_id: str = "") -> Iterator[Event]:
    run_id = ""
    failures = 0
    path = business_path + "/runs/active/stream"
    while True:
        progressed = False
        try:
            for ev in _stream(http, path, last_event_id):
                progressed = True
                if ev.id:
                    last_event_id = ev.id
                run_id = str(ev.run.get("run_id") or run_id)
                yield ev
                if ev.type in TERMINAL:
                    return
            err: Error = TransportError("runledger: GET %s: stream closed before the run's end" % path)
        except APIError as e:
            if e.code == "no_active_run" and run_id:
                final = http.request("GET", run_path(business, run_id), read=True)
                if final.get("status") != "running":
                    yield Event("", "ended", final)
                    return
                if not final.get("active"):
                    yield Event("", "inactive", final)
                    return
                # The read models disagree for a moment: ask the stream again.
            elif not e.transient:
                raise
            err = e
        except (TransportError, OSError, HTTPException) as e:
            err = e if isinstance(e, Error) else TransportError("runledger: GET %s: %s" % (path, e))
        if progressed:
            failures = 0
        failures += 1
        if failures >= http.max_attempts:
            raise err
        wait = http.backoff(failures)
        if isinstance(err, APIError) and err.retry_after > 0:
            wait = max(wait, min(err.retry_after, 30.0))
        http.logger.warning("runledger: stream of %s dropped; resuming after %s in %.2fs: %s",
                            business, last_event_id or "the start", wait, err)
        http.sleep(wait)


def _stream(http: Transport, path: str, last_event_id: str) -> Iterator[Event]:
    headers = {"Accept": "text/event-stream"}
    if http.token:
        headers["Authorization"] = "Bearer " + http.token
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    headers.update(http.min_position_headers())
    req = urllib.request.Request(http.base_url + path, method="GET", headers=headers)
    try:
        res = http._opener.open(req, timeout=STREAM_IDLE_TIMEOUT)
    except urllib.error.HTTPError as e:
        try:
            raw = e.read()
        finally:
            e.close()
        raise problem_error("GET", path, e.code, e.headers, raw) from None
    except (socket.timeout, urllib.error.URLError) as e:
        raise TransportError("runledger: GET %s: %s" % (path, e)) from e
    try:
        yield from parse_events(_lines(res))
    except socket.timeout as e:
        raise TransportError("runledger: GET %s: no data for %gs" % (path, STREAM_IDLE_TIMEOUT), "timeout") from e
    finally:
        res.close()


def _lines(res: Any) -> Iterator[str]:
    while True:
        raw: Optional[bytes] = res.readline(1 << 20)
        if not raw:
            return
        yield raw.decode("utf-8").rstrip("\r\n")
